"""workers.decoder: raw ring-buffer records → rows of plain values."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from workers.ctypes_layout import HEADER_FIELDS, layout
from workers.decoder import EventDecoder, _proc_ppid, monotonic_to_epoch_offset
from workers.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
HEADER_NAMES = [name for name, _ in HEADER_FIELDS]

HEADER = {"ts": 1_000, "cgroup_id": 77, "pid": 4242, "tid": 4243, "uid": 1000, "gid": 100, "comm": b"bash"}


def field(name: str, type_: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **kw}


def make(fields: list[dict[str, Any]]) -> EventDecoder:
    dec = EventDecoder({"struct": "event", "ringbuf": "events", "fields": fields})
    dec.offset_ns = 0
    return dec


def raw(fields: list[dict[str, Any]], header: dict[str, Any] | None = None, **values: Any) -> bytes:
    """Pack an event the way the kernel would lay it out; missing values are zero."""
    lay = layout([(f["name"], f["type"]) for f in fields], leading=HEADER_FIELDS)
    merged = {**HEADER, **(header or {}), **values}
    args = []
    for name, ctype in zip(lay.names, lay.types, strict=True):
        default = 0 if ctype.kind == "int" else b""
        args.append(merged.get(name, default))
    return lay.codec.pack(*args)


def as_dict(dec: EventDecoder, row: list[Any]) -> dict[str, Any]:
    assert len(row) == len(dec.columns)
    return dict(zip(dec.columns, row, strict=True))


# ---------------------------------------------------------------- header and basics


def test_columns_and_size():
    fields = [field("a", "u8"), field("b", "u64")]
    dec = make(fields)
    assert dec.columns == HEADER_NAMES + ["a", "b"]
    assert dec.size == 64


def test_header_decoded():
    fields = [field("value", "u32")]
    dec = make(fields)
    row = as_dict(dec, dec.decode(raw(fields, value=7)))
    assert row == {"ts": 1000, "cgroup_id": 77, "pid": 4242, "tid": 4243, "uid": 1000, "gid": 100,
                   "comm": "bash", "value": 7}
    assert isinstance(row["comm"], str)


def test_comm_full_width_and_invalid_utf8():
    fields = [field("v", "u8")]
    dec = make(fields)
    row = as_dict(dec, dec.decode(raw(fields, header={"comm": b"abcdefghijklmnop"})))
    assert row["comm"] == "abcdefghijklmnop"
    row = as_dict(dec, dec.decode(raw(fields, header={"comm": b"a\xffb\0garbage"})))
    assert row["comm"] == "a\ufffdb"


def test_ts_offset_added():
    fields = [field("v", "u8")]
    dec = make(fields)
    dec.offset_ns = 1_700_000_000_000_000_000
    row = dec.decode(raw(fields, header={"ts": 123}))
    assert row[0] == 1_700_000_000_000_000_123


def test_default_offset_is_epoch_minus_monotonic():
    dec = EventDecoder({"fields": [field("v", "u8")]})
    expected = time.time_ns() - time.monotonic_ns()
    assert abs(dec.offset_ns - expected) < 5_000_000_000
    assert abs(monotonic_to_epoch_offset() - expected) < 5_000_000_000


def test_signed_and_unsigned_ints():
    fields = [field("a", "s8"), field("b", "s16"), field("c", "s32"), field("d", "s64"), field("e", "u64")]
    dec = make(fields)
    row = as_dict(dec, dec.decode(raw(fields, a=-1, b=-300, c=-70000, d=-(2**40), e=2**64 - 1)))
    assert (row["a"], row["b"], row["c"], row["d"], row["e"]) == (-1, -300, -70000, -(2**40), 2**64 - 1)


def test_char_array_stops_at_nul():
    fields = [field("path", "char[16]")]
    dec = make(fields)
    assert as_dict(dec, dec.decode(raw(fields, path=b"/etc\0passwd")))["path"] == "/etc"
    assert as_dict(dec, dec.decode(raw(fields, path=b"")))["path"] == ""
    assert as_dict(dec, dec.decode(raw(fields, path=b"0123456789abcdef")))["path"] == "0123456789abcdef"
    assert as_dict(dec, dec.decode(raw(fields, path="é".encode())))["path"] == "é"


def test_bytes_without_format_are_hex():
    fields = [field("blob", "u8[4]")]
    dec = make(fields)
    assert as_dict(dec, dec.decode(raw(fields, blob=b"\x01\xab\x00\xff")))["blob"] == "01ab00ff"


# ---------------------------------------------------------------- strlist


ARGV = [field("argc", "u32"), field("argv", "char[4][8]", count_field="argc")]


def _argv(*items: bytes) -> bytes:
    return b"".join(item.ljust(8, b"\0")[:8] for item in items)


@pytest.mark.parametrize(
    ("argc", "items", "expected"),
    [
        (0, [b"ls"], []),
        (1, [b"ls", b"-l"], ["ls"]),
        (2, [b"ls", b"-l"], ["ls", "-l"]),
        (3, [b"ls", b"", b"x"], ["ls", "", "x"]),  # empty arguments in the middle are kept
        (3, [b"a", b"b"], ["a", "b", ""]),  # counted entries are kept even when empty
        (4, [b"a", b"b", b"c", b"d"], ["a", "b", "c", "d"]),
        (99, [b"a", b"b", b"c", b"d"], ["a", "b", "c", "d"]),  # capped at N
        (2, [b"12345678", b"x\0yz"], ["12345678", "x"]),
    ],
)
def test_strlist_honours_count_field(argc, items, expected):
    dec = make(ARGV)
    row = as_dict(dec, dec.decode(raw(ARGV, argc=argc, argv=_argv(*items))))
    assert row["argv"] == expected
    assert row["argc"] == argc


def test_strlist_count_field_after_the_list():
    fields = [field("argv", "char[3][4]", count_field="n"), field("n", "u8")]
    dec = make(fields)
    row = as_dict(dec, dec.decode(raw(fields, n=2, argv=b"ab\0\0cd\0\0ef\0\0")))
    assert row["argv"] == ["ab", "cd"]


def test_strlist_without_count_field_drops_trailing_empties():
    fields = [field("names", "char[4][4]")]
    dec = make(fields)
    assert as_dict(dec, dec.decode(raw(fields, names=b"ab\0\0\0\0\0\0cd\0\0")))["names"] == ["ab", "", "cd"]
    assert as_dict(dec, dec.decode(raw(fields, names=b"")))["names"] == []


# ---------------------------------------------------------------- ip addresses


V4 = socket.inet_pton(socket.AF_INET, "192.168.1.20")
V6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")


def _ip_fields(family_format: str | None) -> list[dict[str, Any]]:
    fam = field("family", "u16") if family_format is None else field("family", "u16", format=family_format)
    return [fam, field("saddr", "u8[16]", format="ip", family_field="family"),
            field("daddr", "u8[16]", format="ip", family_field="family")]


@pytest.mark.parametrize("family_format", [None, "family"])
@pytest.mark.parametrize(
    ("family", "addr", "expected", "expected_family"),
    [
        (2, V4 + b"\xee" * 12, "192.168.1.20", 4),  # bytes after the IPv4 address are ignored
        (10, V6, "2001:db8::1", 6),
        (0, V4, V4.hex() + "00" * 12, 0),
        (99, b"\x01" * 16, "01" * 16, 99),
    ],
)
def test_ip_formatting(family_format, family, addr, expected, expected_family):
    fields = _ip_fields(family_format)
    dec = make(fields)
    row = as_dict(dec, dec.decode(raw(fields, family=family, saddr=addr, daddr=addr)))
    assert row["saddr"] == expected and row["daddr"] == expected
    assert row["family"] == (expected_family if family_format == "family" else family)


@pytest.mark.parametrize("family", [2, 10])
def test_ip_with_family_field_after_the_address(family):
    fields = [field("addr", "u8[16]", format="ip", family_field="fam"), field("fam", "u8", format="family")]
    dec = make(fields)
    row = as_dict(dec, dec.decode(raw(fields, fam=family, addr=V4 if family == 2 else V6)))
    assert row["addr"] == ("192.168.1.20" if family == 2 else "2001:db8::1")
    assert row["fam"] == (4 if family == 2 else 6)


def test_family_format_alone():
    fields = [field("fam", "u16", format="family")]
    dec = make(fields)
    assert [dec.decode(raw(fields, fam=f))[-1] for f in (2, 10, 1, 0)] == [4, 6, 1, 0]


# ---------------------------------------------------------------- enum and when


PROCESS = [
    field("event", "u8", enum={0: "exec", 1: "exit"}),
    field("exit_code", "s32", when={"event": ["exit"]}),
    field("argc", "u32", when={"event": ["exec"]}),
    field("filename", "char[8]", when={"event": ["exec"]}),
    field("argv", "char[2][4]", count_field="argc", when={"event": ["exec"]}),
    field("both", "u32", when={"event": ["exec", "exit"]}),
    field("always", "u32"),
]


def test_enum_mapping():
    dec = make(PROCESS)
    assert as_dict(dec, dec.decode(raw(PROCESS, event=0)))["event"] == "exec"
    assert as_dict(dec, dec.decode(raw(PROCESS, event=1)))["event"] == "exit"


def test_enum_unknown_value_is_str():
    dec = make(PROCESS)
    row = as_dict(dec, dec.decode(raw(PROCESS, event=7, always=3, both=4)))
    assert row["event"] == "7"
    # An unknown value matches no `when`, so every conditional field is None.
    assert (row["exit_code"], row["argc"], row["filename"], row["argv"], row["both"]) == (None,) * 5
    assert row["always"] == 3


def test_enum_string_keys_from_a_serialized_plan():
    fields = [field("kind", "u8", enum={"0": "a", "1": "b"})]
    dec = make(fields)
    assert dec.decode(raw(fields, kind=1))[-1] == "b"


def test_when_exec():
    dec = make(PROCESS)
    row = as_dict(dec, dec.decode(raw(PROCESS, event=0, exit_code=-5, argc=1, filename=b"/bin/ls",
                                      argv=b"ls\0\0-l\0\0", both=9, always=1)))
    assert row["event"] == "exec"
    assert row["exit_code"] is None
    assert row["argc"] == 1
    assert row["filename"] == "/bin/ls"
    assert row["argv"] == ["ls"]
    assert row["both"] == 9 and row["always"] == 1


def test_when_exit():
    dec = make(PROCESS)
    row = as_dict(dec, dec.decode(raw(PROCESS, event=1, exit_code=-5, argc=1, filename=b"/bin/ls", both=9)))
    assert row["event"] == "exit"
    assert row["exit_code"] == -5
    assert row["argc"] is None and row["filename"] is None and row["argv"] is None
    assert row["both"] == 9


# ---------------------------------------------------------------- short and long records


def test_short_record_is_zero_padded():
    fields = [field("a", "u32"), field("name", "char[16]"), field("b", "u64")]
    dec = make(fields)
    full = raw(fields, a=5, name=b"hello", b=99)
    short = full[:48 + 4 + 3]  # header, a, and the first 3 bytes of name
    row = as_dict(dec, dec.decode(short))
    assert row["a"] == 5
    assert row["name"] == "hel"
    assert row["b"] == 0


def test_header_only_and_empty_records():
    fields = [field("a", "u32"), field("kind", "u8", enum={0: "zero"})]
    dec = make(fields)
    row = as_dict(dec, dec.decode(raw(fields, a=5)[:48]))
    assert row["pid"] == 4242 and row["a"] == 0 and row["kind"] == "zero"
    row = as_dict(dec, dec.decode(b""))
    assert row == {"ts": 0, "cgroup_id": 0, "pid": 0, "tid": 0, "uid": 0, "gid": 0, "comm": "",
                   "a": 0, "kind": "zero"}


def test_longer_record_ignores_the_tail():
    fields = [field("a", "u32")]
    dec = make(fields)
    data = raw(fields, a=11) + b"\xff" * 24
    assert dec.decode(data)[-1] == 11


def test_decode_does_not_keep_state_between_records():
    dec = make(PROCESS)
    first = dec.decode(raw(PROCESS, event=0, argc=1, argv=b"ls"))
    second = dec.decode(raw(PROCESS, event=1, exit_code=3))
    assert as_dict(dec, first)["argv"] == ["ls"]
    assert as_dict(dec, second)["exit_code"] == 3


# ---------------------------------------------------------------- proc_ppid


needs_proc = pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/stat").exists(), reason="needs /proc")


@needs_proc
def test_proc_ppid_of_self():
    assert _proc_ppid(os.getpid()) == os.getppid()


def test_proc_ppid_of_missing_process():
    assert _proc_ppid(0) == 0
    assert _proc_ppid(2**31 - 1) == 0


@needs_proc
def test_resolve_proc_ppid_only_when_zero_and_applicable():
    fields = [field("event", "u8", enum={0: "exec", 1: "exit"}),
              field("ppid", "u32", resolve="proc_ppid", when={"event": ["exec"]})]
    dec = make(fields)
    me = {"pid": os.getpid()}
    assert as_dict(dec, dec.decode(raw(fields, header=me, event=0, ppid=0)))["ppid"] == os.getppid()
    assert as_dict(dec, dec.decode(raw(fields, header=me, event=0, ppid=12345)))["ppid"] == 12345
    assert as_dict(dec, dec.decode(raw(fields, header=me, event=1, ppid=0)))["ppid"] is None


# ---------------------------------------------------------------- with a real spec


def test_tcpconnect_spec_plan():
    spec = load_spec(REPO / "bpf" / "tcpconnect")
    assert spec.event is not None
    plan = spec.event.model_dump()
    dec = EventDecoder(plan)
    dec.offset_ns = 0
    fields = plan["fields"]
    data = raw(fields, latency_ns=1500, family=10, sport=40000, dport=443, result=1, saddr=V6,
               daddr=socket.inet_pton(socket.AF_INET6, "::1"))
    assert len(data) == dec.size
    row = as_dict(dec, dec.decode(data))
    assert row["family"] == 6
    assert row["saddr"] == "2001:db8::1" and row["daddr"] == "::1"
    assert row["result"] == "failed"
    assert (row["sport"], row["dport"], row["latency_ns"]) == (40000, 443, 1500)


def test_process_spec_plan():
    spec = load_spec(REPO / "bpf" / "process")
    assert spec.event is not None
    plan = spec.event.model_dump()
    dec = EventDecoder(plan)
    dec.offset_ns = 0
    argv = b"".join(s.ljust(128, b"\0") for s in (b"/bin/ls", b"-la", b"/tmp"))
    data = raw(plan["fields"], event=0, argc=2, ppid=1, filename=b"/usr/bin/ls", argv=argv,
               exit_code=9, duration_ns=5)
    row = as_dict(dec, dec.decode(data))
    assert row["event"] == "exec"
    assert row["argv"] == ["/bin/ls", "-la"]
    assert row["filename"] == "/usr/bin/ls"
    assert row["ppid"] == 1
    assert row["exit_code"] is None and row["duration_ns"] is None and row["exit_signal"] is None
