"""Which container a cgroup path belongs to, for every common runtime and cgroup driver.

Stdlib only, pure functions. The id is the 64-hex container id the runtime's API knows;
the pod uid (Kubernetes) comes from the ``pod<uid>`` level of the path, with the
systemd driver's underscores turned back into dashes.

Layouts handled (cgroup v1 and v2 alike; only the path matters):

* docker, cgroupfs driver: ``/docker/<id>``; systemd driver: ``/system.slice/docker-<id>.scope``
* containerd (nerdctl, ctr): ``/<namespace>/<id>``, or ``nerdctl-<id>.scope`` with systemd
* Kubernetes (kubelet, any CRI): ``/kubepods[/<qos>]/pod<uid>/<id>`` with cgroupfs, or
  ``/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/<prefix>-<id>.scope``
  with systemd, where the prefix tells the runtime: ``cri-containerd``, ``crio``, ``docker``
* cri-o outside those: ``crio-<id>`` / ``crio-<id>.scope``
* podman: ``libpod-<id>.scope`` (rootful or rootless, systemd) or ``/libpod_parent/libpod-<id>``;
  ``libpod-conmon-<id>.scope`` is the monitor, not the container
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ID = r"[0-9a-f]{64}"
_SCOPE = re.compile(rf"^(?P<prefix>docker|cri-containerd|crio|libpod|nerdctl|containerd)-(?P<id>{_ID})\.scope$")
_PLAIN_PREFIXED = re.compile(rf"^(?P<prefix>crio|libpod|docker|cri-containerd)-(?P<id>{_ID})$")
_BARE_ID = re.compile(rf"^{_ID}$")
_POD = re.compile(r"^(?:[a-z-]*kubepods-(?:besteffort-|burstable-|guaranteed-)?)?pod(?P<uid>[0-9a-fA-F_-]{32,36})"
                  r"(?:\.slice)?$")

_RUNTIME_OF_PREFIX = {
    "docker": "docker", "cri-containerd": "containerd", "containerd": "containerd", "nerdctl": "containerd",
    "crio": "cri-o", "libpod": "podman",
}


@dataclass(frozen=True, slots=True)
class CgroupContainer:
    runtime: str  # docker, containerd, cri-o, podman
    container_id: str
    pod_uid: str | None = None


def parse_cgroup_path(path: str) -> CgroupContainer | None:
    """The container a cgroup path belongs to, or None for a host cgroup."""
    parts = [p for p in path.strip().split("/") if p]
    pod_uid = None
    kube = False
    for part in parts:
        if "kubepods" in part:  # also k3s/kind's kubelet-kubepods… levels
            kube = True
        m = _POD.match(part)
        if m and kube:
            pod_uid = m.group("uid").replace("_", "-")
    # The container is the deepest level that names one (a container may create sub-cgroups).
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        if part.startswith("libpod-conmon-"):
            return None
        m = _SCOPE.match(part) or _PLAIN_PREFIXED.match(part)
        if m:
            runtime = _RUNTIME_OF_PREFIX[m.group("prefix")]
            return CgroupContainer(runtime, m.group("id"), pod_uid)
        if _BARE_ID.match(part):
            parent = parts[i - 1] if i else ""
            if kube:
                runtime = "kubernetes"  # cgroupfs driver: the path does not say which CRI runtime
            elif parent == "docker":
                runtime = "docker"
            elif parent == "libpod_parent":
                runtime = "podman"
            else:
                runtime = "containerd"  # /<namespace>/<id>: containerd without Kubernetes
            return CgroupContainer(runtime, part, pod_uid)
    return None


def cgroup_v2_path(proc_cgroup: str) -> str | None:
    """The unified-hierarchy path from the text of /proc/PID/cgroup (the ``0::`` line)."""
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            return path
    return None


def cgroup_paths(proc_cgroup: str) -> list[str]:
    """Every hierarchy's path from /proc/PID/cgroup, the unified one first (v1-only hosts have none)."""
    unified = cgroup_v2_path(proc_cgroup)
    others = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and not (parts[0] == "0" and parts[1] == ""):
            others.append(parts[2])
    return ([unified] if unified is not None else []) + others


def container_of_process(proc_cgroup: str) -> CgroupContainer | None:
    """The container of a process from /proc/PID/cgroup: v2 first, then any v1 hierarchy."""
    for path in cgroup_paths(proc_cgroup):
        found = parse_cgroup_path(path)
        if found is not None:
            return found
    return None
