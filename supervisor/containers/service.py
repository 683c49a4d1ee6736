"""Container awareness of a running agent: index, watcher, registry, runtime sources and the enricher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from supervisor.config import ContainerSettings
from supervisor.containers.cgroup_filter import ContainerRef
from supervisor.containers.cgroup_index import CgroupIndex
from supervisor.containers.cgroup_watch import CgroupWatcher
from supervisor.containers.docker_source import DEFAULT_DOCKER_HOST, DockerSource
from supervisor.containers.enrich import Enricher
from supervisor.containers.registry import ContainerRegistry
from supervisor.containers.sources import ContainerSource

log = logging.getLogger("eunomia.containers")


def docker_url(setting: str | None) -> str:
    """``--docker-socket`` (a path or a URL), else $DOCKER_HOST, else the standard socket."""
    value = setting or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    return value if "://" in value else f"unix://{value}"


@dataclass(slots=True)
class ContainerService:
    registry: ContainerRegistry
    enricher: Enricher
    index: CgroupIndex
    watcher: CgroupWatcher | None = None
    sources: list[ContainerSource] = field(default_factory=list)

    @classmethod
    def create(cls, settings: ContainerSettings) -> ContainerService:
        index = CgroupIndex()
        registry = ContainerRegistry(index, grace=settings.grace, max_containers=settings.max_containers)
        watcher = CgroupWatcher(index.root, registry) if index.root is not None and not registry.by_pid else None
        if index.root is None:
            log.info("no cgroup v2 hierarchy: containers are resolved by pid from /proc/PID/cgroup")
        sources: list[ContainerSource] = [DockerSource(docker_url(settings.docker_host))]
        return cls(registry, Enricher(registry), index, watcher, sources)

    def start(self) -> None:
        if self.watcher is not None:
            self.watcher.start()
        for source in self.sources:
            source.start(self.registry)

    def stop(self) -> None:
        for source in self.sources:
            source.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self.index.close()

    def follow(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Run ``callback`` on ``loop`` whenever containers change (the cgroup filters' refresh)."""
        def changed() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens any more
                loop.call_soon_threadsafe(callback)
        self.registry.on_change(changed)

    def refs(self) -> list[ContainerRef]:
        """The live containers as the cgroup filters see them: one entry per container cgroup."""
        refs = []
        for known in self.registry.containers():
            if known.removed_at is not None:
                continue
            info = known.info
            common = {"id": info.id, "name": info.name or "", "pod": info.pod_name or "",
                      "namespace": info.pod_namespace or "", "k8s_container": info.k8s_container_name or ""}
            refs += [ContainerRef(cgroup_id=cgroup_id, **common) for cgroup_id in known.cgroup_ids] or \
                [ContainerRef(cgroup_id=None, **common)]
        return refs

    def summary(self) -> dict[str, Any]:
        out = self.registry.summary()
        out["rows_enriched"] = self.enricher.rows_enriched
        out["cgroup_root"] = str(self.index.root) if self.index.root is not None else None
        if self.watcher is not None:
            w = self.watcher.stats
            out["cgroup_watch"] = {"watches": w.watches, "created": w.created, "removed": w.removed,
                                   "overflows": w.overflows, "watch_errors": w.watch_errors}
        return out
