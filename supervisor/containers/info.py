"""What the agent knows of a container, and the columns every event gets from it.

Conventions (docs/containers.md):

* ``container_runtime`` is never empty on an enriched event: ``docker``, ``containerd``,
  ``cri-o``, ``podman`` or ``kubernetes`` (a Kubernetes container whose runtime neither the
  cgroup path nor a runtime API told) for a container; ``host`` for a process outside any
  container; ``unknown`` when the event's cgroup could not be resolved (it was removed
  before the agent saw it, or the event has no cgroup id).
* Every other container and Kubernetes field is null when it does not apply (host
  processes) or is not known (a container no runtime API describes: id only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

HOST = "host"
UNKNOWN = "unknown"

#: Columns appended to every event row, in this order.
EVENT_COLUMNS: tuple[str, ...] = (
    "container_id", "container_name", "container_image", "container_runtime",
    "k8s_namespace", "k8s_pod_name", "k8s_pod_uid", "k8s_container_name",
    "container_mntns", "container_pidns", "container_netns",
)

#: The CRI labels kubelet puts on every container it creates, whatever the runtime.
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"


@dataclass(frozen=True, slots=True)
class Namespaces:
    """Inode numbers of a container's namespaces (``/proc/<pid>/ns/*``), as ``lsns`` shows them."""

    mnt: int | None = None
    pid: int | None = None
    net: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One container as a runtime's API describes it."""

    id: str  # the full 64-hex id, as in the cgroup path
    runtime: str  # docker, containerd, cri-o, podman
    name: str | None = None
    image: str | None = None  # the reference it was started from, e.g. "nginx:1.25"
    image_id: str | None = None  # sha256:…
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "created"  # created, running, exited, removed
    pid: int | None = None  # the container's init process, host pid namespace
    namespaces: Namespaces = field(default_factory=Namespaces)
    created_at: float | None = None  # seconds since the epoch

    @property
    def pod_name(self) -> str | None:
        return self.labels.get(POD_NAME_LABEL)

    @property
    def pod_namespace(self) -> str | None:
        return self.labels.get(POD_NAMESPACE_LABEL)

    @property
    def pod_uid(self) -> str | None:
        return self.labels.get(POD_UID_LABEL)

    @property
    def k8s_container_name(self) -> str | None:
        return self.labels.get(CONTAINER_NAME_LABEL)

    def with_state(self, state: str) -> ContainerInfo:
        return replace(self, state=state)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "image": self.image, "image_id": self.image_id,
            "runtime": self.runtime, "state": self.state, "pid": self.pid,
            "k8s_namespace": self.pod_namespace, "k8s_pod_name": self.pod_name, "k8s_pod_uid": self.pod_uid,
            "k8s_container_name": self.k8s_container_name,
            "mntns": self.namespaces.mnt, "pidns": self.namespaces.pid, "netns": self.namespaces.net,
            "labels": dict(self.labels), "created_at": self.created_at,
        }


Row = tuple[Any, ...]

HOST_ROW: Row = (None, None, None, HOST, None, None, None, None, None, None, None)
UNKNOWN_ROW: Row = (None, None, None, UNKNOWN, None, None, None, None, None, None, None)


def container_row(runtime: str, container_id: str, pod_uid: str | None, info: ContainerInfo | None) -> Row:
    """The event columns of a container: what its cgroup path says, completed by its runtime's API."""
    if info is None:
        return (container_id, None, None, runtime, None, None, pod_uid, None, None, None, None)
    if runtime == "kubernetes":  # the cgroupfs driver's path does not say which runtime
        runtime = info.runtime
    ns = info.namespaces
    return (container_id, info.name, info.image, runtime, info.pod_namespace, info.pod_name,
            pod_uid or info.pod_uid, info.k8s_container_name, ns.mnt, ns.pid, ns.net)


def labels_of(row: Row) -> dict[str, str]:
    """Metric labels from event columns: the non-null ones, as strings."""
    return {name: str(value) for name, value in zip(EVENT_COLUMNS, row, strict=True) if value is not None}
