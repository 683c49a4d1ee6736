"""Raw ring-buffer records → rows of plain values, following the spec's field list.

Records are decoded in batches at flush time, not in the ring-buffer callback, so the
callback does nothing but copy bytes. A record shorter than the struct (tracers may
send only the part an event uses) reads as zero-padded.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from workers.ctypes_layout import HEADER_FIELDS, layout

_FAMILY = {2: 4, 10: 6}
Converter = Callable[[Any, list[Any]], Any]


def _cstr(value: bytes, _row: list[Any]) -> str:
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def _proc_ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2:].split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return 0


def monotonic_to_epoch_offset() -> int:
    """ns to add to ``bpf_ktime_get_ns()`` (CLOCK_MONOTONIC) to get ns since the epoch."""
    return time.time_ns() - time.monotonic_ns()


class EventDecoder:
    def __init__(self, event_plan: dict[str, Any]) -> None:
        fields = event_plan["fields"]
        self.layout = layout([(f["name"], f["type"]) for f in fields], leading=HEADER_FIELDS)
        self.columns: list[str] = list(self.layout.names)
        self.size = self.layout.size
        self.offset_ns = monotonic_to_epoch_offset()
        index = {name: i for i, name in enumerate(self.columns)}
        self._pid_index = index["pid"]
        self._converters: list[tuple[int, Converter]] = [(index["comm"], _cstr)]
        self._conditions: list[tuple[int, int, frozenset[str]]] = []
        self._resolvers: list[int] = []
        for field in fields:
            i = index[field["name"]]
            conv = self._converter(field, index)
            if conv is not None:
                self._converters.append((i, conv))
            for ref, allowed in (field.get("when") or {}).items():
                self._conditions.append((i, index[ref], frozenset(allowed)))
            if field.get("resolve") == "proc_ppid":
                self._resolvers.append(i)

    def _converter(self, field: dict[str, Any], index: dict[str, int]) -> Converter | None:
        ctype = self.layout.types[index[field["name"]]]
        if ctype.kind == "str":
            return _cstr
        if ctype.kind == "strlist":
            n, width = ctype.dims
            count_i = index.get(field.get("count_field") or "")

            def strlist(value: bytes, row: list[Any]) -> list[str]:
                count = min(n, row[count_i]) if count_i is not None else n
                items = [value[k * width:(k + 1) * width].split(b"\0", 1)[0] for k in range(count)]
                if count_i is None:
                    while items and not items[-1]:
                        items.pop()
                return [item.decode("utf-8", "replace") for item in items]

            return strlist
        if field.get("format") == "ip":
            fam_i = index[field["family_field"]]

            def ip(value: bytes, row: list[Any]) -> str:
                family = _FAMILY.get(row[fam_i], row[fam_i])
                if family == 4:
                    return socket.inet_ntop(socket.AF_INET, value[:4])
                if family == 6:
                    return socket.inet_ntop(socket.AF_INET6, value[:16])
                return value.hex()

            return ip
        if field.get("format") == "family":
            return lambda value, _row: _FAMILY.get(value, value)
        if field.get("enum"):
            names = {int(k): v for k, v in field["enum"].items()}
            return lambda value, _row: names.get(value, str(value))
        if ctype.kind == "bytes":
            return lambda value, _row: value.hex()
        return None

    def decode(self, raw: bytes) -> list[Any]:
        if len(raw) < self.size:
            raw = raw + bytes(self.size - len(raw))
        row = list(self.layout.codec.unpack_from(raw))
        row[0] += self.offset_ns
        for i, conv in self._converters:
            row[i] = conv(row[i], row)
        for i, ref, allowed in self._conditions:
            if row[ref] not in allowed:
                row[i] = None
        for i in self._resolvers:
            if row[i] == 0:
                row[i] = _proc_ppid(row[self._pid_index])
        return row
