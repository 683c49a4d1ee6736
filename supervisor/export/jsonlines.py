"""The JSON-lines records written by the stdout and file handlers.

An event: its fields (docs/events.md) plus ``instance`` and ``tracer``, one object per
line, like ``eunomiactl trace --json``. A sample: ``{"instance", "ts", "metric", "labels",
"value"}``; a histogram arrives as its ``_bucket``/``_count``/``_sum`` series.
"""

from __future__ import annotations

from typing import Any

import orjson

from supervisor.sinks import Sample


def _fallback(value: Any) -> Any:
    """What orjson cannot encode (bytes from a raw field, say) is written as text, never dropped."""
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def event_lines(instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> list[bytes]:
    lines = []
    for row in rows:
        record = {c: v for c, v in zip(columns, row, strict=False) if v is not None}
        record["instance"] = instance
        record["tracer"] = tracer
        lines.append(orjson.dumps(record, default=_fallback, option=OPTIONS))
    return lines


def sample_lines(instance: str, ts: int, samples: list[Sample]) -> list[bytes]:
    return [orjson.dumps({"instance": instance, "ts": ts, "metric": name, "labels": labels, "value": value},
                         default=_fallback, option=OPTIONS) for name, labels, value in samples]
