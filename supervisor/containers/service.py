"""Container awareness of a running agent: index, watcher, registry, runtime sources and the enricher."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from supervisor.config import ContainerSettings
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

    def summary(self) -> dict[str, Any]:
        out = self.registry.summary()
        out["rows_enriched"] = self.enricher.rows_enriched
        out["cgroup_root"] = str(self.index.root) if self.index.root is not None else None
        if self.watcher is not None:
            w = self.watcher.stats
            out["cgroup_watch"] = {"watches": w.watches, "created": w.created, "removed": w.removed,
                                   "overflows": w.overflows, "watch_errors": w.watch_errors}
        return out
