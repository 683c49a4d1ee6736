"""workers.spec: tracer.yaml validation."""

from __future__ import annotations

import copy
import locale
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.spec import RESERVED_FIELD_NAMES, SPEC_FILE, SpecError, TracerSpec, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]
BUILTIN_FOLDERS = sorted(p.parent for p in (REPO / "bpf").glob(f"*/{SPEC_FILE}"))

MINIMAL: dict[str, Any] = {
    "name": "mini",
    "description": "a minimal tracer",
    "probes": [{"tracepoint": "sched:sched_process_exec"}],
    "event": {"fields": [{"name": "x", "type": "u32"}]},
}


def minimal() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL)


def param(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "int", "define": name.upper(), "description": "d", **kw}


def problems_of(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "some/tracer.yaml")
    exc = info.value
    assert exc.source == "some/tracer.yaml"
    assert exc.problems, "a SpecError lists at least one problem"
    assert str(exc).startswith("some/tracer.yaml: ")
    return exc.problems


# ---------------------------------------------------------------- valid specs


def test_minimal_valid():
    spec = parse_spec(minimal(), "x")
    assert isinstance(spec, TracerSpec)
    assert spec.name == "mini"
    assert spec.program == "program.bpf.c"
    assert spec.hook is None
    assert spec.parameters == [] and spec.metrics == []
    assert spec.probes[0].kind == "tracepoint"
    assert spec.probes[0].target == "sched:sched_process_exec"
    assert spec.event is not None
    assert spec.event.struct == "event" and spec.event.ringbuf == "events"
    assert [(f.name, f.type) for f in spec.event.fields] == [("x", "u32")]


def test_other_probe_kinds():
    data = minimal()
    data["probes"] = [{"uprobe": "/bin/bash:readline", "function": "on_readline"},
                      {"uretprobe": "c:malloc", "function": "on_ret"},
                      {"perf_event": "cpu-clock", "function": "on_sample", "frequency": 49}]
    spec = parse_spec(data, "x")
    assert [(p.kind, p.target, p.function) for p in spec.probes] == [
        ("uprobe", "/bin/bash:readline", "on_readline"), ("uretprobe", "c:malloc", "on_ret"),
        ("perf_event", "cpu-clock", "on_sample")]


@pytest.mark.parametrize(("probe", "needle"), [
    ({"uprobe": "/bin/bash:readline"}, "needs 'function'"),
    ({"uprobe": "/bin/bash", "function": "f"}, "binary:symbol"),
    ({"perf_event": "cpu-clock", "function": "f"}, "needs a frequency"),
    ({"perf_event": "nosuch", "function": "f", "frequency": 49}, "is not one of"),
    ({"uprobe": "a:b", "function": "f", "frequency": 49}, "frequency applies to perf_event"),
    ({"tracepoint": "sched:sched_switch", "function": "f"}, "takes no function"),
    ({"uprobe": "{nosuch}", "function": "f"}, "{nosuch} is not a parameter"),
    ({"uprobe": "{target}", "function": "f"}, None),
])
def test_probe_rules(probe: dict, needle: str | None):
    data = minimal()
    data["probes"] = [probe]
    data["parameters"] = [{"name": "target", "type": "str", "description": "binary:symbol", "required": True}]
    if needle is None:
        assert parse_spec(data, "x").probes[0].target == "{target}"
    else:
        with pytest.raises(SpecError) as info:
            parse_spec(data, "x")
        assert needle in str(info.value)


def test_str_parameters_fill_probe_targets_and_never_reach_c():
    from workers import args as tracer_args
    from workers.catalog import Tracer

    data = minimal()
    data["parameters"] = [{"name": "target", "type": "str", "description": "binary:symbol", "required": True},
                          {"name": "hz", "type": "int", "define": "HZ", "default": 49, "description": "rate"}]
    data["probes"] = [{"uprobe": "{target}", "function": "on_entry"},
                      {"perf_event": "cpu-clock", "function": "on_sample", "frequency": "{hz}"}]
    spec = parse_spec(data, "x")
    with pytest.raises(tracer_args.ArgsError, match="'target' .* is required"):
        tracer_args.resolve(spec, [])
    values = tracer_args.resolve(spec, ["--target", "/bin/sh:main", "--hz", "99"])
    assert all("main" not in flag for flag in tracer_args.defines(spec, values))
    plan = Tracer(spec, Path("/nowhere"), builtin=False).plan(
        "x-1", ["--target", "/bin/sh:main", "--hz", "99"], events_endpoint="e", control_endpoint="c", supervisor_pid=1)
    assert plan.probes == [{"kind": "uprobe", "target": "/bin/sh:main", "function": "on_entry"},
                           {"kind": "perf_event", "target": "cpu-clock", "function": "on_sample", "frequency": 99}]


def test_metrics_only_is_valid():
    data = minimal()
    del data["event"]
    data["metrics"] = [{"name": "x_total", "type": "counter", "help": "h",
                        "labels": [{"name": "comm", "type": "char[16]"}, {"name": "port", "type": "u16"}]},
                       {"name": "lat_seconds", "type": "histogram", "help": "h", "scale": 1e-9}]
    spec = parse_spec(data, "x")
    assert spec.event is None
    assert [m.name for m in spec.metrics] == ["x_total", "lat_seconds"]


def test_rich_valid_event():
    data = minimal()
    data["event"]["fields"] = [
        {"name": "family", "type": "u16", "format": "family"},
        {"name": "addr", "type": "u8[16]", "format": "ip", "family_field": "family"},
        {"name": "kind", "type": "u8", "enum": {0: "exec", 1: "exit"}},
        {"name": "argc", "type": "u32", "when": {"kind": ["exec"]}},
        {"name": "argv", "type": "char[4][8]", "count_field": "argc"},
        {"name": "ppid", "type": "u32", "resolve": "proc_ppid"},
    ]
    data["parameters"] = [param("port", flag="-P", default=0, minimum=0, maximum=65535),
                          {"name": "failed", "type": "bool", "define": "FAILED", "description": "d",
                           "flag": "-x", "default": False},
                          {"name": "who", "type": "comm", "define": "WHO", "description": "d"}]
    spec = parse_spec(data, "x")
    assert spec.parameters[0].long_flag == "--port"
    assert spec.event is not None and spec.event.fields[2].enum == {0: "exec", 1: "exit"}


def test_reserved_names():
    assert {"ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm", "tracer", "instance", "event_id"} \
        == RESERVED_FIELD_NAMES


# ---------------------------------------------------------------- invalid specs


def _set(path: tuple, value: Any) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(*path: Any) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        target = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _add_field(**field: Any) -> Callable[[dict], None]:
    return lambda d: d["event"]["fields"].append(field)


def _fields(*fields: dict) -> Callable[[dict], None]:
    return lambda d: d["event"].__setitem__("fields", list(fields))


def _params(*params: dict) -> Callable[[dict], None]:
    return lambda d: d.__setitem__("parameters", list(params))


def _metrics(*metrics: dict) -> Callable[[dict], None]:
    return lambda d: d.__setitem__("metrics", list(metrics))


KIND = {"name": "kind", "type": "u8", "enum": {0: "exec", 1: "exit"}}

# (id, mutation, strings that must all appear in one of the problems)
INVALID: list[tuple[str, Callable[[dict], None], tuple[str, ...]]] = [
    ("name-uppercase", _set(("name",), "Mini"), ("name", "pattern")),
    ("name-dash", _set(("name",), "my-tracer"), ("name", "pattern")),
    ("name-digit-first", _set(("name",), "1tracer"), ("name", "pattern")),
    ("name-empty", _set(("name",), ""), ("name",)),
    ("name-missing", _delete("name"), ("name", "required")),
    ("description-missing", _delete("description"), ("description", "required")),
    ("no-probes", _set(("probes",), []), ("probes",)),
    ("probes-missing", _delete("probes"), ("probes", "required")),
    ("probe-two-kinds", _set(("probes",), [{"tracepoint": "a:b", "uprobe": "/bin/x:f"}]),
     ("probes.0", "exactly one")),
    ("probe-no-kind", _set(("probes",), [{}]), ("probes.0", "exactly one")),
    ("probe-second-bad", _set(("probes",), [{"tracepoint": "a:b"}, {"tracepoint": "a:b", "perf_event": "x"}]),
     ("probes.1", "exactly one")),
    ("tracepoint-no-colon", _set(("probes",), [{"tracepoint": "sched_process_exec"}]),
     ("probes.0", "sched_process_exec", "category:name")),
    ("tracepoint-two-colons", _set(("probes",), [{"tracepoint": "a:b:c"}]), ("probes.0", "a:b:c")),
    ("tracepoint-space", _set(("probes",), [{"tracepoint": "sched: exec"}]), ("probes.0", "category:name")),
    ("tracepoint-upper-category", _set(("probes",), [{"tracepoint": "Sched:exec"}]), ("probes.0", "Sched:exec")),
    ("probe-kprobe", _set(("probes",), [{"kprobe": "do_sys_open"}]), ("probes.0.kprobe", "Extra")),
    ("unknown-field-type", _fields({"name": "x", "type": "u128"}), ("event.fields.0.type", "u128")),
    ("unknown-field-type-second", _add_field(name="y", type="float"), ("event.fields.1.type", "float")),
    ("zero-dim-field-type", _add_field(name="y", type="char[0]"), ("event.fields.1.type", "char[0]")),
    ("u8-matrix-field-type", _add_field(name="y", type="u8[2][3]"), ("event.fields.1.type", "u8[2][3]")),
    ("field-name-pattern", _add_field(name="Bad", type="u8"), ("event.fields.1.name", "pattern")),
    ("field-missing-type", _add_field(name="y"), ("event.fields.1.type", "required")),
    ("reserved-pid", _add_field(name="pid", type="u32"), ("event", "'pid'", "reserved")),
    ("reserved-comm", _add_field(name="comm", type="char[16]"), ("event", "'comm'", "reserved")),
    ("reserved-ts", _add_field(name="ts", type="u64"), ("event", "'ts'", "reserved")),
    ("reserved-instance", _add_field(name="instance", type="u64"), ("event", "'instance'", "reserved")),
    ("reserved-event-id", _add_field(name="event_id", type="u64"), ("event", "'event_id'", "reserved")),
    ("duplicate-field", _add_field(name="x", type="u8"), ("event", "unique")),
    ("ip-without-family-field", _add_field(name="addr", type="u8[16]", format="ip"),
     ("event", "addr", "family_field")),
    ("ip-on-int", _add_field(name="addr", type="u32", format="ip", family_field="x"),
     ("event", "addr", "format ip")),
    ("ip-family-field-unknown", _add_field(name="addr", type="u8[16]", format="ip", family_field="nope"),
     ("event", "addr", "'nope'")),
    ("ip-family-field-not-int", _fields({"name": "fam", "type": "char[4]"},
                                        {"name": "addr", "type": "u8[16]", "format": "ip", "family_field": "fam"}),
     ("event", "addr", "'fam'")),
    ("family-on-bytes", _add_field(name="fam", type="u8[2]", format="family"), ("event", "fam", "family")),
    ("bad-format", _add_field(name="y", type="u32", format="hex"), ("event.fields.1.format",)),
    ("enum-on-string", _add_field(name="y", type="char[4]", enum={0: "a"}), ("event", "y", "enum")),
    ("count-field-on-str", _add_field(name="s", type="char[16]", count_field="x"),
     ("event", "s", "count_field")),
    ("count-field-on-int", _add_field(name="s", type="u32", count_field="x"), ("event", "s", "count_field")),
    ("count-field-unknown", _add_field(name="s", type="char[2][8]", count_field="nope"),
     ("event", "s", "'nope'")),
    ("count-field-not-int", _fields({"name": "c", "type": "char[2]"},
                                    {"name": "s", "type": "char[2][8]", "count_field": "c"}),
     ("event", "s", "'c'")),
    ("when-non-enum", _add_field(name="y", type="u32", when={"x": ["a"]}), ("event", "y", "'x'", "enum")),
    ("when-unknown-field", _add_field(name="y", type="u32", when={"nope": ["a"]}), ("event", "y", "'nope'")),
    ("when-unknown-value", _fields(KIND, {"name": "y", "type": "u32", "when": {"kind": ["exec", "fork"]}}),
     ("event", "y", "fork", "kind")),
    ("resolve-unknown", _add_field(name="y", type="u32", resolve="proc_uid"), ("event.fields.1.resolve",)),
    ("event-bad-struct", _set(("event", "struct"), "Event"), ("event.struct", "pattern")),
    ("event-bad-ringbuf", _set(("event", "ringbuf"), "my-events"), ("event.ringbuf", "pattern")),
    ("event-no-fields", _delete("event", "fields"), ("event.fields", "required")),
    ("counter-without-total", _metrics({"name": "opens", "type": "counter", "help": "h"}),
     ("metrics.0", "opens", "_total")),
    ("metric-bad-type", _metrics({"name": "x_total", "type": "gauge", "help": "h"}), ("metrics.0.type",)),
    ("metric-no-help", _metrics({"name": "x_total", "type": "counter"}), ("metrics.0.help", "required")),
    ("metric-bad-name", _metrics({"name": "X-total", "type": "counter", "help": "h"}),
     ("metrics.0.name", "pattern")),
    ("label-le", _metrics({"name": "lat_seconds", "type": "histogram", "help": "h",
                           "labels": [{"name": "le", "type": "u32"}]}), ("metrics.0", "lat_seconds", "'le'")),
    ("label-duplicate", _metrics({"name": "x_total", "type": "counter", "help": "h",
                                  "labels": [{"name": "a", "type": "u32"}, {"name": "a", "type": "u8"}]}),
     ("metrics.0", "x_total", "unique")),
    ("label-bytes-type", _metrics({"name": "x_total", "type": "counter", "help": "h",
                                   "labels": [{"name": "addr", "type": "u8[16]"}]}),
     ("metrics.0.labels.0.type", "u8[16]")),
    ("label-unknown-type", _metrics({"name": "x_total", "type": "counter", "help": "h",
                                     "labels": [{"name": "a", "type": "u7"}]}), ("metrics.0.labels.0.type", "u7")),
    ("metric-bad-bucket", _metrics({"name": "h_seconds", "type": "histogram", "help": "h", "bucket": "linear"}),
     ("metrics.0.bucket",)),
    ("param-clash-pid", _params(param("pid")), ("pid", "reserved")),
    ("param-clash-comm", _params({"name": "comm", "type": "comm", "define": "MY_COMM", "description": "d"}),
     ("comm", "reserved")),
    ("param-clash-ringbuf", _params(param("ringbuf_pages")), ("ringbuf_pages",)),
    ("param-duplicate", _params(param("a", define="A1"), param("a", define="A2")), ("'a'", "duplicated")),
    ("duplicate-flags", _params(param("a", flag="-a"), param("b", flag="-a")), ("flags collide", "-a")),
    ("flag-clash-common", _params(param("a", flag="-p")), ("flags collide", "-p")),
    ("duplicate-defines", _params(param("a", define="SAME"), param("b", define="SAME")), ("define",)),
    ("define-clash-common", _params(param("a", define="EUNOMIA_FILTER_PID")), ("define",)),
    ("param-bad-define", _params(param("a", define="lower")), ("parameters.0.define", "pattern")),
    ("param-bad-flag", _params(param("a", flag="--a")), ("parameters.0.flag", "pattern")),
    ("param-bad-type", _params(param("a", type="float")), ("parameters.0.type",)),
    ("param-no-description", _params({"name": "a", "type": "int", "define": "A"}),
     ("parameters.0.description", "required")),
    ("bool-default-int", _params(param("a", type="bool", default=1)), ("parameters.0", "bool")),
    ("int-default-bool", _params(param("a", default=True)), ("parameters.0", "integer")),
    ("int-default-str", _params(param("a", default="5")), ("parameters.0", "integer")),
    ("minimum-on-bool", _params(param("a", type="bool", minimum=0)), ("parameters.0", "int only")),
    ("power-on-comm", _params(param("a", type="comm", power_of_two=True)), ("parameters.0", "int only")),
    ("extra-top", _set(("extra",), 1), ("extra", "Extra inputs")),
    ("extra-event", _set(("event", "size"), 4), ("event.size", "Extra inputs")),
    ("extra-field", _add_field(name="y", type="u8", units="ms"), ("event.fields.1.units", "Extra inputs")),
    ("extra-probe", _set(("probes",), [{"tracepoint": "a:b", "filter": "x"}]), ("probes.0.filter", "Extra")),
    ("extra-param", _params(param("a", choices=[1])), ("parameters.0.choices", "Extra inputs")),
    ("extra-metric", _metrics({"name": "x_total", "type": "counter", "help": "h", "unit": "s"}),
     ("metrics.0.unit", "Extra inputs")),
    ("extra-label", _metrics({"name": "x_total", "type": "counter", "help": "h",
                              "labels": [{"name": "a", "type": "u8", "x": 1}]}),
     ("metrics.0.labels.0.x", "Extra inputs")),
    ("no-event-no-metrics", _delete("event"), ("(top level)", "event section")),
    ("event-null-no-metrics", _set(("event",), None), ("(top level)", "event section")),
    ("probes-not-a-list", _set(("probes",), "sched:sched_process_exec"), ("probes",)),
]


@pytest.mark.parametrize(("mutate", "needles"), [(m, n) for _, m, n in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid(mutate, needles):
    data = minimal()
    mutate(data)
    problems = problems_of(data)
    assert any(all(n in p for n in needles) for p in problems), problems


@pytest.mark.parametrize("doc", [None, [], ["name", "x"], "name: x", 42, 1.5, True])
def test_non_mapping_document(doc):
    problems = problems_of(doc)
    assert problems == [f"the spec must be a mapping, not {type(doc).__name__}"]


def test_several_problems_reported_together():
    data = minimal()
    data["name"] = "Bad"
    data["probes"] = [{"tracepoint": "nocolon"}]
    data["bogus"] = 1
    problems = problems_of(data)
    joined = "\n".join(problems)
    assert "name:" in joined and "probes.0" in joined and "bogus" in joined
    assert len(problems) >= 3


def test_problem_format_is_where_colon_what():
    problems = problems_of({**minimal(), "name": "Bad"})
    assert problems[0].startswith("name: ")
    assert "Value error" not in problems[0]


def test_spec_is_frozen():
    spec = parse_spec(minimal(), "x")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        spec.name = "other"  # type: ignore[misc]


def test_duplicate_field_problem_names_the_field():
    data = minimal()
    data["event"]["fields"].append({"name": "x", "type": "u8"})
    problems = problems_of(data)
    assert any("'x'" in p for p in problems), problems


def test_default_outside_bounds_rejected():
    data = minimal()
    data["parameters"] = [param("port", default=0, minimum=1, maximum=10)]
    problems_of(data)


def test_duplicate_metric_names_rejected():
    data = minimal()
    data["metrics"] = [{"name": "x_total", "type": "counter", "help": "h"},
                       {"name": "x_total", "type": "counter", "help": "h"}]
    problems_of(data)


# ---------------------------------------------------------------- load_spec


PROGRAM = "int x;\n"


def write_tracer(root: Path, folder: str, data: Any | None = None, *, text: str | None = None,
                 program: bool = True) -> Path:
    path = root / folder
    path.mkdir()
    if text is None and data is not None:
        text = yaml.safe_dump(data)
    if text is not None:
        (path / SPEC_FILE).write_text(text)
    if program:
        (path / "program.bpf.c").write_text(PROGRAM)
    return path


def load_problems(folder: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(folder)
    assert info.value.source == str(folder / SPEC_FILE)
    return info.value.problems


def test_load_valid(tmp_path: Path):
    folder = write_tracer(tmp_path, "mini", minimal())
    spec = load_spec(folder)
    assert spec.name == "mini"


def test_load_accepts_str_path(tmp_path: Path):
    folder = write_tracer(tmp_path, "mini", minimal())
    assert load_spec(str(folder)).name == "mini"  # type: ignore[arg-type]


def test_load_missing_spec(tmp_path: Path):
    folder = write_tracer(tmp_path, "mini", None)
    assert load_problems(folder) == ["file not found"]


def test_load_missing_folder(tmp_path: Path):
    assert load_problems(tmp_path / "nowhere") == ["file not found"]


@pytest.mark.parametrize("text", ["name: [unclosed\n", "a: b\n c: d: e\n", "key: 'open\n", "\t- tab\n"])
def test_load_invalid_yaml(tmp_path: Path, text: str):
    folder = write_tracer(tmp_path, "mini", text=text)
    problems = load_problems(folder)
    assert len(problems) == 1 and problems[0].startswith("not valid YAML")


def test_load_empty_file(tmp_path: Path):
    folder = write_tracer(tmp_path, "mini", text="")
    assert load_problems(folder) == ["the spec must be a mapping, not NoneType"]


def test_load_invalid_spec_reports_fields(tmp_path: Path):
    data = minimal()
    data["name"] = "Mini"
    folder = write_tracer(tmp_path, "mini", data)
    problems = load_problems(folder)
    assert any(p.startswith("name:") for p in problems)


def test_load_program_missing(tmp_path: Path):
    folder = write_tracer(tmp_path, "mini", minimal(), program=False)
    problems = load_problems(folder)
    assert len(problems) == 1
    assert problems[0].startswith("program: 'program.bpf.c' not found")


def test_load_custom_program_and_hook(tmp_path: Path):
    data = minimal()
    data["program"] = "main.c"
    data["hook"] = "hook.py"
    folder = write_tracer(tmp_path, "mini", data, program=False)
    problems = load_problems(folder)
    assert any(p.startswith("program: 'main.c'") for p in problems)
    assert any(p.startswith("hook: 'hook.py'") for p in problems)
    (folder / "main.c").write_text(PROGRAM)
    (folder / "hook.py").write_text("")
    spec = load_spec(folder)
    assert (spec.program, spec.hook) == ("main.c", "hook.py")


def test_load_program_is_a_directory(tmp_path: Path):
    folder = write_tracer(tmp_path, "mini", minimal(), program=False)
    (folder / "program.bpf.c").mkdir()
    assert any(p.startswith("program:") for p in load_problems(folder))


def test_load_name_differs_from_folder(tmp_path: Path):
    folder = write_tracer(tmp_path, "other", minimal())
    problems = load_problems(folder)
    assert problems == ["name: 'mini' differs from its folder name 'other'"]


def test_load_reports_missing_program_and_name_together(tmp_path: Path):
    folder = write_tracer(tmp_path, "other", minimal(), program=False)
    problems = load_problems(folder)
    assert len(problems) == 2
    assert problems[0].startswith("program:") and problems[1].startswith("name:")


@pytest.mark.skipif(locale.getpreferredencoding(False).lower().replace("-", "") != "utf8",
                    reason="needs a UTF-8 locale to show the problem")
def test_load_non_utf8_file_is_a_spec_error(tmp_path: Path):
    folder = write_tracer(tmp_path, "mini", None)
    (folder / SPEC_FILE).write_bytes(b"name: mini\ndescription: caf\xe9\n")
    load_problems(folder)


@pytest.mark.parametrize("folder", BUILTIN_FOLDERS, ids=[p.name for p in BUILTIN_FOLDERS])
def test_builtin_tracers_load(folder: Path):
    spec = load_spec(folder)
    assert spec.name == folder.name
    assert (folder / spec.program).is_file()


def test_builtin_tracers_exist():
    names = {p.name for p in BUILTIN_FOLDERS}
    assert {"process", "tcpconnect", "opensnoop"} <= names


def test_builtin_tcpconnect_details():
    spec = load_spec(REPO / "bpf" / "tcpconnect")
    assert spec.event is not None
    fields = {f.name: f for f in spec.event.fields}
    assert fields["daddr"].format == "ip" and fields["daddr"].family_field == "family"
    assert fields["result"].enum == {0: "established", 1: "failed"}
    assert [m.name for m in spec.metrics] == ["tcp_connects_total", "tcp_connect_latency_seconds"]
    assert spec.parameters[0].flag == "-P"


def test_builtin_process_details():
    spec = load_spec(REPO / "bpf" / "process")
    assert spec.event is not None
    fields = {f.name: f for f in spec.event.fields}
    assert fields["argv"].count_field == "argc"
    assert fields["ppid"].resolve == "proc_ppid"
    assert fields["filename"].when == {"event": ["exec"]}
