"""workers.args: tracer arguments → validated values → numeric -D macros."""

from __future__ import annotations

import re
from typing import Any

import pytest

from workers.args import (
    COMM_LEN,
    COMMON_PARAMETERS,
    ArgsError,
    defines,
    pack_comm,
    parameters,
    parse_flags,
    resolve,
)
from workers.spec import TracerSpec, parse_spec

COMMON = ["pid", "comm", "ringbuf_pages", "container", "pod", "namespace", "host", "cgroup"]
DEFAULTS = {"pid": 0, "comm": "", "ringbuf_pages": 256, "container": "", "pod": "", "namespace": "", "host": False,
            "cgroup": ""}


def make_spec(*params: dict[str, Any]) -> TracerSpec:
    return parse_spec({
        "name": "demo",
        "description": "d",
        "probes": [{"tracepoint": "sched:sched_process_exec"}],
        "event": {"fields": [{"name": "x", "type": "u32"}]},
        "parameters": list(params),
    }, "demo/tracer.yaml")


@pytest.fixture(scope="module")
def spec() -> TracerSpec:
    return make_spec(
        {"name": "port", "type": "int", "flag": "-P", "define": "FILTER_DPORT", "default": 0,
         "minimum": 0, "maximum": 65535, "description": "d"},
        {"name": "failed", "type": "bool", "flag": "-x", "define": "FILTER_FAILED", "default": False,
         "description": "d"},
        {"name": "min_size", "type": "int", "define": "MIN_SIZE", "description": "no default, no flag"},
        {"name": "verbose", "type": "bool", "define": "VERBOSE", "description": "no default"},
        {"name": "target", "type": "comm", "flag": "-t", "define": "TARGET", "description": "no default"},
    )


ALL_DEFAULTS = {**DEFAULTS, "port": 0, "failed": False, "min_size": 0, "verbose": False, "target": ""}


def test_common_parameters():
    assert [p.name for p in COMMON_PARAMETERS] == COMMON
    assert COMM_LEN == 16


def test_parameters_common_first(spec):
    assert [p.name for p in parameters(spec)] == [*COMMON, "port", "failed", "min_size", "verbose", "target"]


@pytest.mark.parametrize("given", [None, {}, []])
def test_defaults(spec, given):
    assert resolve(spec, given) == ALL_DEFAULTS


def test_defaults_without_spec_parameters():
    assert resolve(make_spec(), None) == DEFAULTS


def test_none_values_mean_default(spec):
    assert resolve(spec, {"pid": None, "port": None}) == ALL_DEFAULTS


# ---------------------------------------------------------------- dict style


def test_dict_values(spec):
    values = resolve(spec, {"pid": 42, "comm": "bash", "ringbuf_pages": 16, "port": 443,
                            "failed": True, "min_size": -5, "verbose": "yes", "target": "nginx"})
    assert values == {**DEFAULTS, "pid": 42, "comm": "bash", "ringbuf_pages": 16, "port": 443, "failed": True,
                      "min_size": -5, "verbose": True, "target": "nginx"}


@pytest.mark.parametrize(("value", "expected"), [("42", 42), ("0x2a", 42), ("0o52", 42), (" 42 ", 42),
                                                 (42.0, 42), ("0", 0)])
def test_int_coercion(spec, value, expected):
    assert resolve(spec, {"pid": value})["pid"] == expected


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("true", True), ("TRUE", True), ("1", True), ("yes", True),
    ("false", False), ("0", False), ("No", False),
])
def test_bool_coercion(spec, value, expected):
    assert resolve(spec, {"failed": value})["failed"] is expected


# ---------------------------------------------------------------- list style (bcc flags)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-p", "42"], {"pid": 42}),
        (["-p 42"], {"pid": 42}),
        (["--pid=42"], {"pid": 42}),
        (["--pid", "42"], {"pid": 42}),
        (["--pid 42"], {"pid": 42}),
        (["-p", 42], {"pid": 42}),
        (["--ringbuf-pages", "16"], {"ringbuf_pages": 16}),
        (["--ringbuf-pages=32"], {"ringbuf_pages": 32}),
        (["-x"], {"failed": True}),
        (["--failed"], {"failed": True}),
        (["--failed=false"], {"failed": False}),
        (["--failed=yes"], {"failed": True}),
        (["-x", "-p", "7"], {"failed": True, "pid": 7}),
        (["-p 7 -x"], {"failed": True, "pid": 7}),
        (["-P", "80", "-n", "curl"], {"port": 80, "comm": "curl"}),
        (["--comm", "curl"], {"comm": "curl"}),
        (["-n 'Web Content'"], {"comm": "Web Content"}),
        (["--min-size", "-1"], {"min_size": -1}),
        (["-p", "1", "-p", "2"], {"pid": 2}),  # the last one wins
        (["--verbose", "-t", "sshd"], {"verbose": True, "target": "sshd"}),
    ],
)
def test_flags(spec, argv, expected):
    assert resolve(spec, argv) == {**ALL_DEFAULTS, **expected}


def test_parse_flags_returns_raw_values(spec):
    assert parse_flags(spec, ["-p", "42", "-x", "--comm=sh"]) == {"pid": "42", "failed": True, "comm": "sh"}


def test_parse_flags_empty(spec):
    assert parse_flags(spec, []) == {}


# ---------------------------------------------------------------- errors


def args_error(spec, given) -> str:
    with pytest.raises(ArgsError) as info:
        resolve(spec, given)
    return str(info.value)


@pytest.mark.parametrize(
    ("given", "needles"),
    [
        (["-z"], ("unknown option", "'-z'", "demo")),
        (["--nope", "1"], ("unknown option", "'--nope'")),
        (["--nope=1"], ("unknown option", "'--nope'")),
        (["42"], ("unknown option", "'42'")),
        (["-p=42"], ("unknown option", "'-p=42'")),
        (["--ringbuf_pages", "16"], ("unknown option", "'--ringbuf_pages'")),
        (["-p"], ("-p", "pid", "needs a value")),
        (["-x", "--ringbuf-pages"], ("--ringbuf-pages", "ringbuf_pages", "needs a value")),
        (["-p", "abc"], ("'pid'", "integer", "'abc'")),
        (["-p", "4.5"], ("'pid'", "integer")),
        (["-p", "042"], ("'pid'", "integer")),  # int(x, 0) refuses ambiguous leading zeros
        ({"pid": "12abc"}, ("'pid'", "integer")),
        ({"pid": 4.5}, ("'pid'", "integer", "4.5")),
        ({"pid": True}, ("'pid'", "integer", "True")),
        ({"pid": [1]}, ("'pid'", "integer")),
        ({"pid": -1}, ("'pid'", "-1", "below the minimum 0")),
        (["-p", "-1"], ("'pid'", "below the minimum")),
        ({"pid": 4194305}, ("'pid'", "above the maximum 4194304")),
        (["-P", "65536"], ("'port'", "above the maximum 65535")),
        ({"ringbuf_pages": 0}, ("'ringbuf_pages'", "below the minimum 1")),
        ({"ringbuf_pages": 131072}, ("'ringbuf_pages'", "above the maximum")),
        ({"ringbuf_pages": 3}, ("'ringbuf_pages'", "3", "power of two")),
        (["--ringbuf-pages", "24"], ("'ringbuf_pages'", "24", "power of two")),
        ({"ringbuf_pages": 65535}, ("'ringbuf_pages'", "power of two")),
        ({"failed": "maybe"}, ("'failed'", "true or false", "'maybe'")),
        (["--failed=maybe"], ("'failed'", "'maybe'")),
        ({"failed": 1}, ("'failed'", "true or false")),
        ({"failed": 0}, ("'failed'", "true or false")),
        ({"comm": "a" * 16}, ("'comm'", "at most 15 bytes")),
        ({"comm": "é" * 8}, ("'comm'", "at most 15 bytes")),  # 16 bytes in UTF-8
        ({"comm": "ba\0sh"}, ("'comm'", "NUL")),
        (["-n", "a" * 20], ("'comm'", "at most 15 bytes")),
        ({"comm": 5}, ("'comm'", "process name")),
        ({"comm": b"bash"}, ("'comm'", "process name")),
        ({"target": "x" * 16}, ("'target'", "at most 15 bytes")),
        ({"nope": 1}, ("unknown parameter", "'nope'", "demo")),
        ({"pid": 1, "b": 2, "a": 3}, ("unknown parameter", "['a', 'b']")),
        ({"ringbuf-pages": 16}, ("unknown parameter", "'ringbuf-pages'")),
    ],
)
def test_errors_name_the_parameter(spec, given, needles):
    message = args_error(spec, given)
    for needle in needles:
        assert needle in message, (needle, message)


def test_comm_limits(spec):
    assert resolve(spec, {"comm": "a" * 15})["comm"] == "a" * 15
    assert resolve(spec, {"comm": ""})["comm"] == ""


def test_args_error_is_value_error():
    assert issubclass(ArgsError, ValueError)


def test_bad_default_surfaces_as_args_error():
    s = make_spec({"name": "who", "type": "comm", "define": "WHO", "description": "d", "default": 5})
    assert "'who'" in args_error(s, None)


def test_zero_is_not_a_power_of_two():
    s = make_spec({"name": "buf", "type": "int", "define": "BUF", "description": "d", "power_of_two": True})
    assert resolve(s, {"buf": 8})["buf"] == 8
    args_error(s, {"buf": 0})


def test_value_with_quote_in_argv_list(spec):
    try:
        values = resolve(spec, ["-n", "it's"])
    except ArgsError:
        return  # an ArgsError would be acceptable; a bare ValueError is not
    assert values["comm"] == "it's"


def test_value_with_space_in_argv_list(spec):
    assert resolve(spec, ["-n", "Web Content"])["comm"] == "Web Content"


# ---------------------------------------------------------------- pack_comm / defines


def test_pack_comm_bash():
    lo, hi = pack_comm("bash")
    assert lo == 0x68736162  # b"bash" little endian
    assert hi == 0
    assert lo.to_bytes(8, "little") + hi.to_bytes(8, "little") == b"bash".ljust(16, b"\0")


def test_pack_comm_long():
    lo, hi = pack_comm("abcdefghijklmno")
    assert lo.to_bytes(8, "little") == b"abcdefgh"
    assert hi.to_bytes(8, "little") == b"ijklmno\0"


def test_pack_comm_empty():
    assert pack_comm("") == (0, 0)


def test_pack_comm_utf8():
    lo, hi = pack_comm("é")
    assert lo == int.from_bytes("é".encode().ljust(8, b"\0"), "little") and hi == 0


DEFINE_RE = re.compile(r"^-D[A-Z0-9_]+=(0x[0-9a-f]+ULL|-?\d+)$")


@pytest.mark.parametrize(
    "given",
    [
        None,
        {"pid": 42, "comm": "bash", "ringbuf_pages": 16},
        {"comm": "abcdefghijklmno", "min_size": -7, "failed": True, "verbose": "yes", "target": "x"},
        ["-p", "1", "-n '$(rm -rf /)'", "-x"],
        {"comm": '";exit'},
        {"comm": "a\nb", "target": "\\x41"},
    ],
)
def test_defines_are_numeric(spec, given):
    values = resolve(spec, given)
    flags = defines(spec, values)
    assert flags, "there is always at least the common parameters"
    for flag in flags:
        assert DEFINE_RE.match(flag), flag


def test_defines_content(spec):
    values = resolve(spec, {"pid": 42, "comm": "bash", "ringbuf_pages": 16, "port": 443, "failed": True,
                            "min_size": -3})
    flags = defines(spec, values)
    assert flags == [
        "-DEUNOMIA_FILTER_PID=42",
        "-DEUNOMIA_FILTER_COMM_SET=1",
        "-DEUNOMIA_FILTER_COMM_LO=0x68736162ULL",
        "-DEUNOMIA_FILTER_COMM_HI=0x0ULL",
        "-DEUNOMIA_RINGBUF_PAGES=16",
        "-DEUNOMIA_FILTER_HOST=0",
        "-DFILTER_DPORT=443",
        "-DFILTER_FAILED=1",
        "-DMIN_SIZE=-3",
        "-DVERBOSE=0",
        "-DTARGET_SET=0",
        "-DTARGET_LO=0x0ULL",
        "-DTARGET_HI=0x0ULL",
        "-DEUNOMIA_FILTER_CGROUP=0",
    ]


def test_defines_for_defaults_of_builtin_style_spec():
    s = make_spec()
    assert defines(s, resolve(s, None)) == [
        "-DEUNOMIA_FILTER_PID=0",
        "-DEUNOMIA_FILTER_COMM_SET=0",
        "-DEUNOMIA_FILTER_COMM_LO=0x0ULL",
        "-DEUNOMIA_FILTER_COMM_HI=0x0ULL",
        "-DEUNOMIA_RINGBUF_PAGES=256",
        "-DEUNOMIA_FILTER_HOST=0",
        "-DEUNOMIA_FILTER_CGROUP=0",
    ]


# ---------------------------------------------------------------- the cgroup filter


@pytest.mark.parametrize(("given", "mode"), [
    ({}, 0),
    ({"container": "web"}, 1),
    ({"pod": "api-0", "namespace": "prod"}, 1),
    ({"namespace": "prod"}, 1),
    ({"container": "app", "pod": "api-0"}, 1),
    ({"cgroup": "/system.slice/nginx.service"}, 1),
    ({"host": True}, 2),
])
def test_cgroup_filter_mode_reaches_the_kernel(spec, given, mode):
    assert f"-DEUNOMIA_FILTER_CGROUP={mode}" in defines(spec, resolve(spec, given))


@pytest.mark.parametrize(("argv", "message"), [
    (["--host", "--container", "web"], "--host (host processes only) cannot be combined with --container"),
    (["--host", "--namespace", "prod"], "--host (host processes only) cannot be combined with --namespace"),
    (["--cgroup", "/a", "--pod", "x"], "--cgroup names a cgroup directly: it cannot be combined with --pod"),
])
def test_cgroup_filters_that_cannot_combine(spec, argv, message):
    with pytest.raises(ArgsError, match=re.escape(message)):
        resolve(spec, argv)


def test_cgroup_filter_flags(spec):
    values = resolve(spec, ["--container", "web", "--pod=api-0", "--namespace", "prod"])
    assert (values["container"], values["pod"], values["namespace"], values["host"]) == ("web", "api-0", "prod", False)
