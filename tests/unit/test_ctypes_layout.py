"""workers.ctypes_layout: field types and C struct layout."""

from __future__ import annotations

import struct

import pytest

from workers.ctypes_layout import HEADER_FIELDS, HEADER_NAMES, CType, TypeError_, layout, parse_type

INTS = [
    ("u8", 1, "B"), ("u16", 2, "H"), ("u32", 4, "I"), ("u64", 8, "Q"),
    ("s8", 1, "b"), ("s16", 2, "h"), ("s32", 4, "i"), ("s64", 8, "q"),
]


@pytest.mark.parametrize(("text", "size", "fmt"), INTS)
def test_parse_ints(text: str, size: int, fmt: str):
    t = parse_type(text)
    assert t == CType(text, "int", size, size, fmt, ())
    assert struct.calcsize("<" + t.fmt) == size


def test_parse_strips_whitespace():
    assert parse_type("  u32 ").text == "u32"
    assert parse_type(" char[4]\n").size == 4


@pytest.mark.parametrize("n", [1, 16, 256])
def test_parse_char_array(n: int):
    t = parse_type(f"char[{n}]")
    assert (t.kind, t.size, t.align, t.fmt, t.dims) == ("str", n, 1, f"{n}s", (n,))


def test_parse_char_matrix():
    t = parse_type("char[20][128]")
    assert (t.kind, t.size, t.align, t.fmt, t.dims) == ("strlist", 2560, 1, "2560s", (20, 128))


def test_parse_u8_array():
    t = parse_type("u8[16]")
    assert (t.kind, t.size, t.align, t.fmt, t.dims) == ("bytes", 16, 1, "16s", (16,))


@pytest.mark.parametrize(
    "text",
    [
        "u128", "u", "s", "i32", "int", "uint32_t", "U32", "u 32", "",
        "char", "char[]", "char[-1]", "char[x]", "u16[4]", "s8[4]", "u8[]", "char[4", "char 4",
        "char[4][4][4]", "string", "u32[1]", "char[1.5]",
    ],
)
def test_parse_unknown(text: str):
    with pytest.raises(TypeError_, match="unknown type"):
        parse_type(text)


@pytest.mark.parametrize("text", ["char[0]", "u8[0]", "char[0][4]", "char[4][0]", "char[0][0]"])
def test_parse_zero_dimensions(text: str):
    with pytest.raises(TypeError_, match="positive"):
        parse_type(text)


@pytest.mark.parametrize("text", ["u8[2][3]", "u8[1][1]"])
def test_parse_u8_matrix_rejected(text: str):
    with pytest.raises(TypeError_, match="two dimensions"):
        parse_type(text)


def test_type_error_is_value_error():
    assert issubclass(TypeError_, ValueError)


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("types", "offsets", "size"),
    [
        ([], [], 0),
        (["u8"], [0], 1),
        (["u8", "u64"], [0, 8], 16),
        (["u64", "u8"], [0, 8], 16),
        (["u64", "u16", "u8", "u8[16]"], [0, 8, 10, 11], 32),
        (["u8", "u16"], [0, 2], 4),
        (["u8", "u32"], [0, 4], 8),
        (["u16", "u8"], [0, 2], 4),
        (["u32", "u8", "u8"], [0, 4, 5], 8),
        (["char[3]", "u32"], [0, 4], 8),
        (["char[3]", "char[2]"], [0, 3], 5),
        (["u8", "s16", "s32", "s64"], [0, 2, 4, 8], 16),
        (["u32", "char[20][128]", "u8"], [0, 4, 2564], 2568),
        (["u8", "char[2][3]", "u16"], [0, 1, 8], 10),
        (["s8", "u8[3]"], [0, 1], 4),
    ],
)
def test_layout_offsets(types, offsets, size):
    lay = layout([(f"f{i}", t) for i, t in enumerate(types)])
    assert list(lay.offsets) == offsets
    assert lay.size == size
    assert lay.codec.size == size
    assert lay.names == tuple(f"f{i}" for i in range(len(types)))
    assert [t.text for t in lay.types] == types


def _natural_layout(types: list[str]) -> tuple[list[int], int]:
    """Reference: the C ABI rule written independently."""
    offset, offsets, max_align = 0, [], 1
    for t in types:
        c = parse_type(t)
        offset += -offset % c.align
        offsets.append(offset)
        offset += c.size
        max_align = max(max_align, c.align)
    return offsets, offset + (-offset % max_align)


def test_layout_matches_reference_on_many_combinations():
    import random

    rng = random.Random(5)
    pool = [t for t, _, _ in INTS] + ["char[1]", "char[7]", "u8[16]", "char[3][5]"]
    for _ in range(300):
        types = [rng.choice(pool) for _ in range(rng.randint(1, 8))]
        lay = layout([(f"f{i}", t) for i, t in enumerate(types)])
        offsets, size = _natural_layout(types)
        assert list(lay.offsets) == offsets, types
        assert lay.size == size == lay.codec.size, types


def test_header_layout_is_48_bytes():
    lay = layout([], leading=HEADER_FIELDS)
    assert lay.size == 48
    assert lay.names == ("ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm")
    assert lay.offsets == (0, 8, 16, 20, 24, 28, 32)


def test_header_names():
    assert HEADER_NAMES == frozenset({"ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm"})


def test_leading_fields_come_first():
    lay = layout([("x", "u8"), ("y", "u64")], leading=HEADER_FIELDS)
    assert lay.names[:7] == tuple(n for n, _ in HEADER_FIELDS)
    assert lay.names[7:] == ("x", "y")
    assert lay.offsets[7:] == (48, 56)
    assert lay.size == 64


def test_layout_unknown_type_raises():
    with pytest.raises(TypeError_):
        layout([("a", "u32"), ("b", "float")])


def test_codec_round_trips_with_struct_pack():
    fields = [("a", "u8"), ("b", "u64"), ("c", "s16"), ("d", "char[5]"), ("e", "u8[4]"),
              ("f", "s32"), ("g", "char[2][3]"), ("h", "s8")]
    lay = layout(fields)
    values = (0xAB, 2**64 - 1, -2, b"hi\0\0\0", b"\x01\x02\x03\x04", -(2**31), b"ab\0cd\0", -128)
    raw = lay.codec.pack(*values)
    assert len(raw) == lay.size
    assert lay.codec.unpack(raw) == values
    # Each field sits at its offset, little endian, like the C struct would.
    assert raw[lay.offsets[0]] == 0xAB
    assert raw[lay.offsets[1]:lay.offsets[1] + 8] == struct.pack("<Q", 2**64 - 1)
    assert raw[lay.offsets[2]:lay.offsets[2] + 2] == struct.pack("<h", -2)
    assert raw[lay.offsets[3]:lay.offsets[3] + 5] == b"hi\0\0\0"
    assert raw[lay.offsets[5]:lay.offsets[5] + 4] == struct.pack("<i", -(2**31))
    assert raw[lay.offsets[6]:lay.offsets[6] + 6] == b"ab\0cd\0"
    assert raw[lay.offsets[7]] == 0x80


def test_codec_padding_is_zero_and_matches_manual_pack():
    lay = layout([("a", "u8"), ("b", "u32"), ("c", "u16")])
    raw = lay.codec.pack(1, 2, 3)
    manual = struct.pack("<B3xIH2x", 1, 2, 3)
    assert raw == manual
    assert lay.size == 12


def test_codec_is_little_endian_without_native_alignment():
    lay = layout([("a", "u16")])
    assert lay.codec.format.startswith("<")
    assert lay.codec.pack(0x0102) == b"\x02\x01"
