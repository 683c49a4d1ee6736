"""C struct layout for the field types a tracer spec may use.

Stdlib only: shared by the spec validator (supervisor side) and the event decoder
(worker side). Offsets follow the C ABI's natural alignment on x86-64/arm64, so a
spec's field list maps onto the tracer's ``struct event`` byte for byte; the worker
also asks the compiler to confirm the total size (``_Static_assert``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

_INT_RE = re.compile(r"^(u|s)(8|16|32|64)$")
_ARRAY_RE = re.compile(r"^(char|u8)\[(\d+)\](?:\[(\d+)\])?$")
_INT_FMT = {("u", 8): "B", ("u", 16): "H", ("u", 32): "I", ("u", 64): "Q",
            ("s", 8): "b", ("s", 16): "h", ("s", 32): "i", ("s", 64): "q"}


@dataclass(frozen=True, slots=True)
class CType:
    """One field type: ``u32``, ``s64``, ``char[16]``, ``char[20][128]``, ``u8[16]``."""

    text: str
    kind: str  # "int", "str", "strlist", "bytes"
    size: int
    align: int
    fmt: str  # struct module code, no byte order
    dims: tuple[int, ...] = ()


class TypeError_(ValueError):
    """A field type this project does not know."""


def parse_type(text: str) -> CType:
    text = text.strip()
    m = _INT_RE.match(text)
    if m:
        width = int(m.group(2)) // 8
        return CType(text, "int", width, width, _INT_FMT[(m.group(1), width * 8)])
    m = _ARRAY_RE.match(text)
    if m:
        base, n = m.group(1), int(m.group(2))
        inner = int(m.group(3)) if m.group(3) else None
        if n < 1 or (inner is not None and inner < 1):
            raise TypeError_(f"array type {text!r} needs positive dimensions")
        if base == "char" and inner is not None:
            return CType(text, "strlist", n * inner, 1, f"{n * inner}s", (n, inner))
        if inner is not None:
            raise TypeError_(f"{text!r}: only char arrays may have two dimensions")
        return CType(text, "str" if base == "char" else "bytes", n, 1, f"{n}s", (n,))
    raise TypeError_(
        f"unknown type {text!r}: use u8/u16/u32/u64, s8/s16/s32/s64, char[N], char[N][M] or u8[N]"
    )


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


@dataclass(frozen=True, slots=True)
class Layout:
    names: tuple[str, ...]
    types: tuple[CType, ...]
    offsets: tuple[int, ...]
    size: int
    codec: struct.Struct


def layout(fields: list[tuple[str, str]], leading: list[tuple[str, str]] | None = None) -> Layout:
    """Lay out ``leading`` + ``fields`` as a C struct and build a struct codec for it."""
    names: list[str] = []
    types: list[CType] = []
    offsets: list[int] = []
    fmt = ["<"]
    offset = 0
    max_align = 1
    for name, type_text in (leading or []) + fields:
        ctype = parse_type(type_text)
        start = _align(offset, ctype.align)
        if start > offset:
            fmt.append(f"{start - offset}x")
        names.append(name)
        types.append(ctype)
        offsets.append(start)
        fmt.append(ctype.fmt)
        offset = start + ctype.size
        max_align = max(max_align, ctype.align)
    size = _align(offset, max_align) if names else 0
    if size > offset:
        fmt.append(f"{size - offset}x")
    return Layout(tuple(names), tuple(types), tuple(offsets), size, struct.Struct("".join(fmt)))


#: What every tracer's ``struct event`` starts with: ``struct eunomia_header`` in bpf/include/eunomia.h.
HEADER_FIELDS: list[tuple[str, str]] = [
    ("ts", "u64"),
    ("cgroup_id", "u64"),
    ("pid", "u32"),
    ("tid", "u32"),
    ("uid", "u32"),
    ("gid", "u32"),
    ("comm", "char[16]"),
]
HEADER_NAMES = frozenset(name for name, _ in HEADER_FIELDS)
