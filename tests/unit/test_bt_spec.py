"""workers.bt_spec: the bpftrace tracer kind in tracer.yaml, and how its arguments reach the script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from workers import args as tracer_args
from workers.bt_spec import BpftraceSpec
from workers.catalog import Tracer
from workers.spec import SpecError, TracerSpec, load_spec, parse_spec

SPEC: dict[str, Any] = {
    "name": "bt", "kind": "bpftrace", "description": "d",
    "parameters": [{"name": "min_size", "type": "int", "flag": "-m", "default": 0, "description": "m"},
                   {"name": "verbose", "type": "bool", "description": "v"},
                   {"name": "path", "type": "str", "description": "a path"}],
    "event": {"fields": [{"name": "size", "type": "int"}, {"name": "file", "description": "f"}]},
    "metrics": [{"name": "reads_total", "type": "counter", "help": "h", "labels": ["comm"]},
                {"name": "size_bytes", "type": "histogram", "help": "h"}],
}
SCRIPT = "tracepoint:syscalls:sys_exit_read { @reads_total[comm] = count(); @size_bytes = hist(args->ret); }\n"


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "t.yaml")
    return str(info.value)


def test_kind_selects_the_model_and_defaults() -> None:
    spec = parse_spec(SPEC, "t.yaml")
    assert isinstance(spec, BpftraceSpec)
    assert spec.program == "program.bt" and spec.event is not None and spec.event.format == "kv"
    assert spec.event.fields[1].type == "str"
    assert [label.name for label in spec.metrics[0].labels] == ["comm"]
    bcc = parse_spec({"name": "b", "description": "d", "probes": [{"tracepoint": "a:b"}],
                      "event": {"fields": [{"name": "x", "type": "u32"}]}}, "t.yaml")
    assert isinstance(bcc, TracerSpec) and bcc.kind == "bcc"


@pytest.mark.parametrize(("change", "expected"), [
    ({"kind": "dtrace"}, "kind: 'dtrace' is not one of"),
    ({"probes": [{"tracepoint": "a:b"}]}, "probes are the ones in its script"),
    ({"parameters": [{"name": "x", "type": "int", "define": "X", "description": "d"}]}, "have no 'define'"),
    ({"parameters": [{"name": "pid", "type": "int", "description": "d"}]}, "reserved by the runtime"),
    ({"event": {"fields": [{"name": "pid", "type": "int"}]}}, "reserved"),
    ({"event": {"format": "xml", "fields": [{"name": "a"}]}}, "event.format"),
    ({"event": {"fields": [{"name": "a", "type": "str", "enum": {1: "x"}}]}}, "enum needs type int"),
    ({"metrics": [{"name": "reads", "type": "counter", "help": "h"}]}, "counters end in _total"),
    ({"metrics": [{"name": "x", "type": "summary", "help": "h"}]}, "metrics.0.type"),
    ({"event": None, "metrics": []}, "an event section, metrics, or both"),
    ({"strlen": 500}, "strlen"),
])
def test_bad_specs_name_what_is_wrong(change: dict[str, Any], expected: str) -> None:
    assert expected in problems({**SPEC, **change})


def _folder(tmp_path: Path, script: str, spec: dict[str, Any] | None = None) -> Path:
    folder = tmp_path / "bt"
    folder.mkdir()
    (folder / "tracer.yaml").write_text(yaml.safe_dump(spec or SPEC))
    (folder / "program.bt").write_text(script)
    return folder


def test_probes_come_from_the_script(tmp_path: Path) -> None:
    spec = load_spec(_folder(tmp_path, "BEGIN { }\n" + SCRIPT))
    assert [(p.kind, p.target) for p in spec.probes] == [("BEGIN", ""), ("tracepoint", "syscalls:sys_exit_read")]


def test_a_metric_without_its_map_in_the_script_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"metrics: size_bytes: the script has no map @size_bytes"):
        load_spec(_folder(tmp_path, "tracepoint:a:b { @reads_total[comm] = count(); }\n"))


def test_an_unreadable_script_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"program: cannot read .*not closed"):
        load_spec(_folder(tmp_path, 'tracepoint:a:b { printf("x); }\n'))


def test_parameters_become_positional_in_order_and_cgroup_filters_are_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path, SCRIPT)
    tracer = Tracer(load_spec(folder), folder, builtin=False)
    plan = tracer.plan("bt-1", ["-m", "4096", "--verbose", "--path", "/tmp/a b", "-p", "7", "--ringbuf-pages", "64"],
                       events_endpoint="e", control_endpoint="c", supervisor_pid=1)
    assert plan.kind == "bpftrace" and plan.program == str(folder / "program.bt")
    assert plan.positional == ["4096", "1", "/tmp/a b"]
    assert plan.values["pid"] == 7
    assert plan.env == {"BPFTRACE_STRLEN": "64", "BPFTRACE_PERF_RB_PAGES": "64"}
    assert [m["name"] for m in plan.metrics] == ["reads_total", "size_bytes"]
    with pytest.raises(tracer_args.ArgsError, match="not available for bpftrace tracers"):
        tracer.plan("bt-2", ["--host"], events_endpoint="e", control_endpoint="c", supervisor_pid=1)
