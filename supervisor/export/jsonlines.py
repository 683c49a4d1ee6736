"""The JSON-lines records written by the stdout and file handlers.

An event: its fields (docs/events.md) plus ``instance`` and ``tracer``, one object per
line, like ``eunomiactl trace --json``. A sample: ``{"instance", "ts", "metric", "labels",
"value"}``; a histogram arrives as its ``_bucket``/``_count``/``_sum`` series.

A batch becomes one buffer with the offsets where its lines end: keeping one small bytes
object per line alive costs several times the encoding itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from supervisor.sinks import Sample

OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def _fallback(value: Any) -> Any:
    """What orjson cannot encode (bytes from a raw field, say) is written as text, never dropped."""
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


@dataclass(slots=True)
class Lines:
    data: bytearray = field(default_factory=bytearray)
    ends: list[int] = field(default_factory=list)  # data[ends[i-1]:ends[i]] is line i, newline included

    def add(self, record: dict[str, Any]) -> None:
        self.data += orjson.dumps(record, default=_fallback, option=OPTIONS)
        self.ends.append(len(self.data))

    def __len__(self) -> int:
        return len(self.ends)

    def start(self, i: int) -> int:
        return self.ends[i - 1] if i else 0


def event_lines(instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> Lines:
    lines = Lines()
    for row in rows:
        record = {c: v for c, v in zip(columns, row, strict=False) if v is not None}
        record["instance"] = instance
        record["tracer"] = tracer
        lines.add(record)
    return lines


def sample_lines(instance: str, ts: int, samples: list[Sample]) -> Lines:
    lines = Lines()
    for name, labels, value in samples:
        lines.add({"instance": instance, "ts": ts, "metric": name, "labels": labels, "value": value})
    return lines


class JsonLinesHandler:
    """A handler that writes events and samples as JSON lines, each kind switchable by its
    ``events``/``samples`` options; subclasses say where the bytes go (``_write``)."""

    options: Any  # has bool fields ``events`` and ``samples``

    def _write(self, lines: Lines, batch: object) -> None:
        """Write one batch's lines; ``batch`` is the caller's list (the same object on a retry)."""
        raise NotImplementedError

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.options.events:
            self._write(event_lines(instance, tracer, columns, rows), rows)

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None:
        if self.options.samples:
            self._write(sample_lines(instance, ts, samples), samples)

    @property
    def takes_events(self) -> bool:
        return bool(self.options.events)

    @property
    def takes_samples(self) -> bool:
        return bool(self.options.samples)

    def dropped(self, instance: str) -> int:
        return 0  # the buffered wrapper counts the losses
