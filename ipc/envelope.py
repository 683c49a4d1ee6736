"""The versioned msgpack envelope every frame travels in.

A frame is one msgpack map: ``{"v": 1, "t": <type>, "id": <instance id>, ...payload}``.
Decoding never trusts the peer: anything that is not a well-formed frame of a known
type raises :class:`FrameError`, which callers count and discard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgpack

PROTOCOL_VERSION = 1


class FrameType(StrEnum):
    """What a frame carries. Worker → supervisor unless noted."""

    HELLO = "hello"  # process is up, before compiling
    READY = "ready"  # probes attached; only now is the worker "running"
    ERROR = "error"  # a failure report, permanent or not
    HEARTBEAT = "hb"  # both directions; the worker's carries its counters
    EVENTS = "events"  # a batch of decoded events (columns + rows)
    METRICS = "metrics"  # samples read from the kernel's aggregation maps
    STOP = "stop"  # supervisor → worker: detach, flush and exit
    FILTER = "filter"  # supervisor → worker: the cgroup ids of the cgroup filter, {"cgroups": [id, ...]}


class FrameError(ValueError):
    """A frame that cannot be decoded or does not follow the envelope."""


@dataclass(slots=True)
class Frame:
    type: FrameType
    instance: str
    payload: dict[str, Any] = field(default_factory=dict)


_RESERVED = ("v", "t", "id")


def encode(type_: FrameType, instance: str, payload: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": type_.value, "id": instance}
    if payload:
        clash = [k for k in payload if k in _RESERVED]
        if clash:
            raise ValueError(f"payload keys {clash} are reserved by the envelope")
        body.update(payload)
    return msgpack.packb(body, use_bin_type=True)


def encode_events(instance: str, seq: int, columns: list[str], rows: list[list[Any]]) -> bytes:
    """Many events per frame: the column names once, then one list per event."""
    return encode(FrameType.EVENTS, instance, {"seq": seq, "cols": columns, "rows": rows})


def decode(data: bytes) -> Frame:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=64 << 20)
    except Exception as exc:  # msgpack raises a zoo of exception types on garbage
        raise FrameError(f"not a msgpack frame: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(body, dict):
        raise FrameError(f"frame is a {type(body).__name__}, expected a map")
    version = body.pop("v", None)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise FrameError(f"unsupported protocol version {version!r} (this side speaks {PROTOCOL_VERSION})")
    raw_type = body.pop("t", None)
    try:
        type_ = FrameType(raw_type)
    except ValueError:
        raise FrameError(f"unknown frame type {raw_type!r}") from None
    instance = body.pop("id", None)
    if not isinstance(instance, str) or not instance:
        raise FrameError(f"frame has no instance id (got {instance!r})")
    if type_ is FrameType.EVENTS:
        _check_events(body)
    return Frame(type_, instance, body)


def _check_events(body: dict[str, Any]) -> None:
    cols, rows = body.get("cols"), body.get("rows")
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
        raise FrameError("events frame: 'cols' must be a list of strings")
    if not isinstance(rows, list):
        raise FrameError("events frame: 'rows' must be a list")
    width = len(cols)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise FrameError(f"events frame: row {i} does not have {width} columns")
