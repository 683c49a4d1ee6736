"""``sqlite``: the embedded store (the default handler). The store's writer thread already
queues without blocking and counts what it drops per instance, so this handler is not
wrapped again."""

from __future__ import annotations

from typing import Any

from supervisor.export.args import HandlerOptions, parse_options
from supervisor.export.base import ExportConfigError, HandlerArgs, HandlerContext, HandlerStats
from supervisor.sinks import Sample
from supervisor.store.writer import StoreWriter


class SqliteOptions(HandlerOptions):
    pass


class SqliteHandler:
    def __init__(self, writer: StoreWriter, instance: str) -> None:
        self.writer = writer
        self.instance = instance
        self._accepted = 0

    @classmethod
    def create(cls, args: HandlerArgs, context: HandlerContext) -> SqliteHandler:
        parse_options("sqlite", SqliteOptions, args)
        if context.store is None:
            raise ExportConfigError("export handler 'sqlite': this agent runs without a store")
        return cls(context.store, context.instance)

    @property
    def claim(self) -> str:
        return f"the store for {self.instance}"  # twice would store every event twice

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.writer.submit_events(instance, tracer, columns, rows):
            self._accepted += len(rows)

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None:
        if self.writer.submit_samples(ts, samples, instance):
            self._accepted += len(samples)

    def dropped(self, instance: str) -> int:
        return self.writer.stats.dropped.get(instance, 0)

    def close(self) -> None:
        pass  # the store outlives its instances

    @property
    def stats(self) -> HandlerStats:
        store = self.writer.stats
        return HandlerStats(sent=self._accepted, dropped=store.dropped.get(self.instance, 0), errors=store.errors,
                            last_error=store.last_error, queued=self.writer.queued_rows,
                            detail={"path": str(self.writer.path), "errors_and_queue": "store-wide"})
