"""Builds each instance's handlers from its ``export_handlers`` and keeps what they share:
the store, and the destinations only one handler may own (a file, an instance's sqlite or
prometheus handler)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from supervisor.export import registry
from supervisor.export.base import ExportConfigError, HandlerContext, HandlerSpec
from supervisor.export.buffered import Buffered
from supervisor.export.instance import Entry, InstanceExport
from supervisor.store.writer import StoreWriter
from workers.catalog import Tracer

SpecLike = HandlerSpec | dict[str, Any] | str


class Exports:
    def __init__(self, store: StoreWriter | None = None, default: Sequence[SpecLike] | None = None) -> None:
        self.store = store
        if default is None:
            default = [HandlerSpec("sqlite")] if store is not None else []
        self.default = [HandlerSpec.of(s) for s in default]
        self._claims: dict[str, str] = {}  # destination → instance
        self._open: dict[int, InstanceExport] = {}
        self._draining: list[Buffered] = []

    def open(self, instance: str, tracer: Tracer, specs: Sequence[SpecLike] | None = None) -> InstanceExport:
        """The handlers of a new instance (``None``: the default ones). Raises ExportConfigError."""
        wanted = self.default if specs is None else [HandlerSpec.of(s) for s in specs]
        context = HandlerContext(instance=instance, tracer=tracer, store=self.store)
        entries: list[Entry] = []
        claims: list[str] = []
        counts: dict[str, int] = {}
        try:
            for spec in wanted:
                inner, kind, buffer_options = registry.build(spec, context)
                claim = getattr(inner, "claim", None)
                if claim is not None and (claim in claims or claim in self._claims):
                    inner.close()
                    owner = f"instance {self._claims[claim]!r}" if claim in self._claims else \
                        "an earlier handler of this instance"
                    raise ExportConfigError(f"export handler {spec.name!r}: {claim} is already written by {owner}")
                if claim is not None:
                    claims.append(claim)
                handler = Buffered(inner, f"{instance}/{spec.name}", buffer_options) if kind.buffered else inner
                counts[spec.name] = counts.get(spec.name, 0) + 1
                entry_id = spec.name if counts[spec.name] == 1 else f"{spec.name}-{counts[spec.name]}"
                entries.append(Entry(entry_id, spec, kind, handler))
        except BaseException:
            for entry in entries:
                entry.handler.close()
            raise
        for claim in claims:
            self._claims[claim] = instance
        export = InstanceExport(instance, entries, self._release)
        self._open[id(export)] = export
        return export

    def _release(self, export: InstanceExport) -> None:
        self._open.pop(id(export), None)
        for claim in [c for c, owner in self._claims.items() if owner == export.instance]:
            del self._claims[claim]
        self._draining = [h for h in self._draining if not h.join(0)]  # forget the ones that finished
        self._draining += [e.handler for e in export.entries if isinstance(e.handler, Buffered)]

    def close(self, timeout: float = 10.0) -> None:
        """Close every instance's handlers and wait (up to ``timeout``) for their queues to drain."""
        for export in list(self._open.values()):
            export.close()
        deadline = time.monotonic() + timeout
        for handler in self._draining:
            handler.join(max(0.0, deadline - time.monotonic()))
        self._draining = [h for h in self._draining if not h.join(0)]
