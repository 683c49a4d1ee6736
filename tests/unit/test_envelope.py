"""ipc.envelope: the versioned msgpack frame envelope."""

from __future__ import annotations

import random

import msgpack
import pytest

from ipc.envelope import (
    PROTOCOL_VERSION,
    Frame,
    FrameError,
    FrameType,
    decode,
    encode,
    encode_events,
)


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def good(**overrides):
    body = {"v": PROTOCOL_VERSION, "t": "hello", "id": "process-1"}
    body.update(overrides)
    return body


PAYLOADS = {
    FrameType.HELLO: {"pid": 1234, "tracer": "process"},
    FrameType.READY: {"probes": ["sched:sched_process_exec"], "columns": ["ts", "pid"]},
    FrameType.ERROR: {"permanent": True, "message": "compile failed", "detail": None},
    FrameType.HEARTBEAT: {"events": 10, "drops": 0, "rss": 12.5, "raw": b"\x00\x01"},
    FrameType.EVENTS: {"seq": 3, "cols": ["a", "b"], "rows": [[1, "x"], [2, None]]},
    FrameType.METRICS: {"samples": [{"name": "m_total", "labels": {"dport": 80}, "value": 3}]},
    FrameType.STOP: {},
    FrameType.FILTER: {"cgroups": [4026531835, 12345]},
}


def test_protocol_version():
    assert PROTOCOL_VERSION == 1


def test_frame_type_values():
    assert {t.value for t in FrameType} == {"hello", "ready", "error", "hb", "events", "metrics", "stop",
                                             "filter"}


@pytest.mark.parametrize("type_", list(FrameType), ids=lambda t: t.value)
def test_round_trip_every_type(type_: FrameType):
    payload = PAYLOADS[type_]
    data = encode(type_, "tcp-7", payload)
    assert isinstance(data, bytes)
    frame = decode(data)
    assert isinstance(frame, Frame)
    assert frame.type is type_
    assert frame.instance == "tcp-7"
    assert frame.payload == payload


@pytest.mark.parametrize("type_", list(FrameType), ids=lambda t: t.value)
def test_round_trip_without_payload(type_: FrameType):
    if type_ is FrameType.EVENTS:
        with pytest.raises(FrameError):  # an events frame must carry cols and rows
            decode(encode(type_, "x"))
        return
    for payload in (None, {}):
        frame = decode(encode(type_, "x", payload))
        assert frame == Frame(type_, "x", {})


def test_encoded_envelope_shape():
    body = msgpack.unpackb(encode(FrameType.HEARTBEAT, "w", {"n": 1}), raw=False)
    assert body == {"v": 1, "t": "hb", "id": "w", "n": 1}


def test_encode_does_not_mutate_payload():
    payload = {"a": 1}
    encode(FrameType.HELLO, "x", payload)
    assert payload == {"a": 1}


def test_bytes_and_str_are_kept_apart():
    frame = decode(encode(FrameType.HELLO, "x", {"b": b"\xff\x00", "s": "é"}))
    assert frame.payload == {"b": b"\xff\x00", "s": "é"}
    assert isinstance(frame.payload["b"], bytes)


def test_encode_events():
    data = encode_events("proc-1", 42, ["ts", "pid", "comm"], [[1, 2, "bash"], [3, 4, "sh"]])
    frame = decode(data)
    assert frame.type is FrameType.EVENTS
    assert frame.instance == "proc-1"
    assert frame.payload == {"seq": 42, "cols": ["ts", "pid", "comm"], "rows": [[1, 2, "bash"], [3, 4, "sh"]]}


def test_encode_events_empty_rows():
    frame = decode(encode_events("p", 0, ["a"], []))
    assert frame.payload["rows"] == []


def test_encode_events_tuples_become_lists():
    frame = decode(encode_events("p", 1, ["a", "b"], [(1, 2)]))  # type: ignore[list-item]
    assert frame.payload["rows"] == [[1, 2]]


@pytest.mark.parametrize("key", ["v", "t", "id"])
def test_reserved_payload_keys_rejected(key: str):
    with pytest.raises(ValueError, match="reserved"):
        encode(FrameType.HELLO, "x", {key: 1, "other": 2})


def test_frame_error_is_value_error():
    assert issubclass(FrameError, ValueError)


# ---------------------------------------------------------------- decode rejections


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x93\x01",  # truncated array
        b"\xde\xad\xbe\xef\x00\x11",
        bytes(range(256)),
        pack(good()) + b"\x00",  # trailing data
    ],
    ids=["empty", "c1", "truncated", "deadbeef", "range", "extra-data"],
)
def test_reject_garbage(data: bytes):
    with pytest.raises(FrameError):
        decode(data)


@pytest.mark.parametrize(
    "obj",
    [[1, "hello", "x"], 1, "hello", None, True, 1.5, b"bytes"],
    ids=["list", "int", "str", "nil", "bool", "float", "bin"],
)
def test_reject_non_map(obj):
    with pytest.raises(FrameError, match="expected a map"):
        decode(pack(obj))


@pytest.mark.parametrize("version", [0, 2, -1, "1", b"\x01", None, [1]])
def test_reject_wrong_version(version):
    with pytest.raises(FrameError, match="version"):
        decode(pack(good(v=version)))


def test_reject_missing_version():
    body = good()
    del body["v"]
    with pytest.raises(FrameError, match="version"):
        decode(pack(body))


@pytest.mark.parametrize("type_", ["nope", "", "HELLO", None, 1, b"hello", ["hello"], {"a": 1}])
def test_reject_unknown_type(type_):
    with pytest.raises(FrameError, match="unknown frame type"):
        decode(pack(good(t=type_)))


def test_reject_missing_type():
    body = good()
    del body["t"]
    with pytest.raises(FrameError, match="unknown frame type"):
        decode(pack(body))


def test_reject_missing_id():
    body = good()
    del body["id"]
    with pytest.raises(FrameError, match="instance id"):
        decode(pack(body))


@pytest.mark.parametrize("instance", ["", 0, 7, None, b"proc", ["p"], {"a": "b"}, True])
def test_reject_bad_id(instance):
    with pytest.raises(FrameError, match="instance id"):
        decode(pack(good(id=instance)))


def test_reject_non_string_map_keys():
    with pytest.raises(FrameError):
        decode(pack({**good(), 1: "int key"}))


def events(**overrides):
    body = good(t="events", seq=1, cols=["a", "b"], rows=[[1, 2]])
    body.update(overrides)
    return body


def test_events_body_accepted():
    frame = decode(pack(events()))
    assert frame.payload == {"seq": 1, "cols": ["a", "b"], "rows": [[1, 2]]}


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"cols": "ab"}, "cols"),
        ({"cols": None}, "cols"),
        ({"cols": {"a": 1}}, "cols"),
        ({"cols": ["a", 2]}, "cols"),
        ({"cols": ["a", b"b"]}, "cols"),
        ({"cols": ["a", None]}, "cols"),
        ({"rows": None}, "rows"),
        ({"rows": "x"}, "rows"),
        ({"rows": {"0": [1, 2]}}, "rows"),
        ({"rows": [[1, 2], [1]]}, "row 1"),
        ({"rows": [[1, 2, 3]]}, "row 0"),
        ({"rows": [[]]}, "row 0"),
        ({"rows": [[1, 2], "ab"]}, "row 1"),
        ({"rows": [[1, 2], {"a": 1, "b": 2}]}, "row 1"),
    ],
)
def test_events_rejections(overrides, match):
    with pytest.raises(FrameError, match=match):
        decode(pack(events(**overrides)))


def test_events_missing_cols_or_rows():
    for key in ("cols", "rows"):
        body = events()
        del body[key]
        with pytest.raises(FrameError, match=key):
            decode(pack(body))


def test_non_events_frames_are_not_shape_checked():
    # cols/rows only mean something in an events frame.
    frame = decode(pack(good(t="hb", cols="whatever", rows=3)))
    assert frame.payload == {"cols": "whatever", "rows": 3}


# ---------------------------------------------------------------- fuzz


def _decode_or_frame_error(data: bytes) -> None:
    try:
        frame = decode(data)
    except FrameError:
        return
    # Anything accepted must be a well-formed frame.
    assert isinstance(frame.type, FrameType)
    assert isinstance(frame.instance, str) and frame.instance
    assert isinstance(frame.payload, dict)
    assert not {"v", "t", "id"} & set(frame.payload)
    if frame.type is FrameType.EVENTS:
        cols, rows = frame.payload["cols"], frame.payload["rows"]
        assert all(isinstance(c, str) for c in cols)
        assert all(isinstance(r, list) and len(r) == len(cols) for r in rows)


def test_fuzz_random_bytes():
    rng = random.Random(20240601)
    for _ in range(2000):
        data = rng.randbytes(rng.randint(0, 64))
        _decode_or_frame_error(data)


def test_fuzz_random_bytes_with_map_prefix():
    # Start with a fixmap/map16 marker so more inputs get past msgpack itself.
    rng = random.Random(99)
    for _ in range(2000):
        prefix = rng.choice([b"\x83", b"\x84", b"\x85", b"\xde\x00\x04", b"\x80"])
        _decode_or_frame_error(prefix + rng.randbytes(rng.randint(0, 48)))


def test_fuzz_truncations_and_bit_flips_of_events_frame():
    valid = encode_events("proc-1", 7, ["ts", "pid", "comm", "argv"],
                          [[1, 2, "bash", ["ls", "-l"]], [3, 4, "sh", []], [5, 6, "zsh", None]])
    decode(valid)  # sanity
    rng = random.Random(42)
    accepted = rejected = 0
    for i in range(2000):
        data = bytearray(valid)
        mode = i % 4
        if mode == 0:
            data = data[: rng.randrange(len(data))]
        elif mode == 1:
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
        elif mode == 2:
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        else:
            pos = rng.randrange(len(data))
            data = data[:pos] + rng.randbytes(rng.randint(1, 4)) + data[pos:]
        try:
            decode(bytes(data))
            accepted += 1
        except FrameError:
            rejected += 1
        _decode_or_frame_error(bytes(data))
    assert accepted + rejected == 2000
    assert rejected > 0
