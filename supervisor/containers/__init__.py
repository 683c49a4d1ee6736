"""Container and Kubernetes awareness: from a cgroup to a container, its image and its pod."""
