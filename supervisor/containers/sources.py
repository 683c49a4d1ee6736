"""The seam between the container cache and the runtimes' APIs.

A source describes the containers of one runtime (Docker Engine API today; containerd
and CRI-O sources plug in the same way): it lists them once, then follows the runtime's
event stream on a thread of its own and tells a :class:`SourceSink` (the registry) what
changed. A source never blocks its caller: ``start`` returns at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from supervisor.containers.info import ContainerInfo


class SourceSink(Protocol):
    sources: dict[str, str]  # runtime → the source's state, shown by GET /containers

    def upsert(self, info: ContainerInfo) -> None: ...

    def update_state(self, container_id: str, state: str) -> None: ...

    def removed(self, container_id: str) -> None: ...

    def resync(self, runtime: str, infos: Iterable[ContainerInfo]) -> None: ...

    def known(self, container_id: str) -> ContainerInfo | None: ...


class ContainerSource(Protocol):
    runtime: str  # the registry's runtime name: docker, containerd, cri-o, podman

    def start(self, sink: SourceSink) -> None:
        """List the containers and follow the event stream, on a thread; return at once."""
        ...

    def stop(self) -> None:
        """End the stream and the thread (bounded wait)."""
        ...
