"""The OTLP handler as the export framework sees it (supervisor/export/base.py's Handler).

:class:`~supervisor.export.otlp.OtlpHandler` queues and exports on its own thread, so it is
registered unbuffered; this adapter only turns its statistics into ``HandlerStats``.
"""

from __future__ import annotations

from typing import Any

from supervisor.export.base import HandlerStats
from supervisor.export.otlp import OtlpHandler
from supervisor.sinks import Sample


class OtlpExport:
    name = "otlp"

    def __init__(self, handler: OtlpHandler) -> None:
        self.handler = handler  # no claim: any number of instances may send to one collector

    @classmethod
    def create(cls, args: list[str] | dict[str, Any]) -> OtlpExport:
        return cls(OtlpHandler(args))

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.handler.events(instance, tracer, columns, rows)

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None:
        self.handler.samples(instance, ts, samples)

    def dropped(self, instance: str) -> int:
        return self.handler.dropped(instance)

    def close(self) -> None:
        self.handler.close()

    @property
    def stats(self) -> HandlerStats:
        raw = self.handler.stats()
        return HandlerStats(sent=raw["sent"], dropped=raw["dropped_events"], dropped_samples=raw["dropped_points"],
                            errors=raw["errors"], last_error=raw["last_error"] or "", queued=raw["queued"],
                            detail={k: raw[k] for k in ("endpoint", "sent_events", "sent_points", "series",
                                                        "retrying")})
