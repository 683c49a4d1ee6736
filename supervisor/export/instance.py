"""One instance's export handlers: a Sink that hands the instance's data to each of them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor.export.base import Handler, HandlerSpec
from supervisor.export.registry import HandlerType
from supervisor.sinks import Sample

log = logging.getLogger("eunomia.export")


@dataclass(slots=True)
class Entry:
    id: str  # the handler's name, with "-2", "-3" … for a second handler of the same type
    spec: HandlerSpec
    kind: HandlerType
    handler: Handler
    failures: int = 0  # calls that raised on the loop (handlers that are not buffered)
    last_failure: str = ""


class InstanceExport:
    def __init__(self, instance: str, entries: list[Entry], on_close: Callable[[InstanceExport], None]) -> None:
        self.instance = instance
        self.entries = entries
        self._on_close = on_close
        self.closed = False

    def _failed(self, entry: Entry, exc: Exception) -> None:
        entry.failures += 1
        entry.last_failure = f"{exc.__class__.__name__}: {exc}"[:500]
        if entry.failures == 1:
            log.exception("export %s/%s failed", self.instance, entry.id)

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        for entry in self.entries:
            try:
                entry.handler.events(instance, tracer, columns, rows)
            except Exception as exc:  # a handler's bug must not cost the others their data
                self._failed(entry, exc)

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None:
        for entry in self.entries:
            try:
                entry.handler.samples(instance, ts, samples)
            except Exception as exc:
                self._failed(entry, exc)

    def dropped(self, instance: str) -> int:
        return sum(self.drops().values())

    def drops(self) -> dict[str, int]:
        """Events lost, by hop (``store`` for sqlite, ``exporter`` for the rest)."""
        out = {"store": 0, "exporter": 0}
        for entry in self.entries:
            out[entry.kind.hop] += entry.handler.dropped(self.instance)
        return out

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.entries:
            stats = entry.handler.stats.to_dict()
            if entry.failures:
                stats["errors"] += entry.failures
                stats["last_error"] = entry.last_failure
            out.append({"id": entry.id, **entry.spec.to_dict(), "hop": entry.kind.hop, **stats})
        return out

    def close(self) -> None:
        """Stop handing data on; buffered handlers finish delivering in their own threads."""
        if self.closed:
            return
        self.closed = True
        for entry in self.entries:
            try:
                entry.handler.close()
            except Exception as exc:
                self._failed(entry, exc)
        self._on_close(self)
