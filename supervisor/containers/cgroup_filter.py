"""Which cgroup ids a tracer instance's ``--container/--pod/--namespace/--host/--cgroup``
options stand for: the set the worker puts in the kernel's ``eunomia_cgroups`` map.

The kernel checks a task's cgroup and its ancestors against the set (bpf/include/eunomia.h),
so a container's cgroup covers the processes in its sub-cgroups, and a parent directory
that a runtime keeps only for containers (``/docker``, ``/kubepods.slice``) covers every
container under it, including the ones that start later — which is how ``--host`` stays
exact for those layouts even before the supervisor hears of a new container.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.args import FILTER_EXCLUDE, FILTER_INCLUDE, ArgsError, cgroup_filter_mode

#: cgroup v2 directories that hold containers only (cgroupfs drivers, Kubernetes, podman).
CONTAINER_PARENTS = ("docker", "kubepods", "kubepods.slice", "machine.slice", "lxc.payload", "libpod_parent")
MIN_ID_PREFIX = 12  # like docker's short ids


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """What the filter needs to know of a container."""

    id: str
    name: str
    cgroup_id: int | None
    pod: str = ""
    namespace: str = ""
    k8s_container: str = ""


@dataclass(frozen=True, slots=True)
class CgroupFilter:
    mode: int  # FILTER_INCLUDE or FILTER_EXCLUDE
    container: str = ""
    pod: str = ""
    namespace: str = ""
    cgroup: str = ""

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> CgroupFilter | None:
        mode = cgroup_filter_mode(values)
        if not mode:
            return None
        return cls(mode, container=values.get("container") or "", pod=values.get("pod") or "",
                   namespace=values.get("namespace") or "", cgroup=values.get("cgroup") or "")

    def describe(self) -> str:
        if self.mode == FILTER_EXCLUDE:
            return "host processes only"
        parts = [f"{name} {value!r}" for name, value in
                 (("container", self.container), ("pod", self.pod), ("namespace", self.namespace),
                  ("cgroup", self.cgroup)) if value]
        return " and ".join(parts)

    def selects(self, c: ContainerRef) -> bool:
        if self.container and not _names_container(self.container, c):
            return False
        if self.pod and c.pod != self.pod:
            return False
        return not self.namespace or c.namespace == self.namespace

    def resolve(self, containers: Iterable[ContainerRef], root: Path | None) -> set[int]:
        """The cgroup ids for the kernel's map. Raises ArgsError for a --cgroup that does not exist."""
        if self.cgroup:
            return {_cgroup_id(root, self.cgroup)}
        if self.mode == FILTER_INCLUDE:
            return {c.cgroup_id for c in containers if c.cgroup_id and self.selects(c)}
        ids = {c.cgroup_id for c in containers if c.cgroup_id}
        if root is not None:
            for parent in CONTAINER_PARENTS:
                try:
                    ids.add(os.stat(root / parent).st_ino)
                except OSError:
                    continue
        return ids


def _names_container(selector: str, c: ContainerRef) -> bool:
    if selector in (c.name, c.k8s_container, c.id):
        return True
    return len(selector) >= MIN_ID_PREFIX and c.id.startswith(selector)


def _cgroup_id(root: Path | None, path: str) -> int:
    if root is None:
        raise ArgsError("--cgroup: this host has no cgroup v2 hierarchy")
    target = root / path.lstrip("/")
    if ".." in Path(path).parts or not target.is_dir():
        raise ArgsError(f"--cgroup: no cgroup {path!r} under {root}")
    return os.stat(target).st_ino
