"""Event columns and metric labels → OpenTelemetry attribute names, checked against the
semantic conventions package itself."""

from __future__ import annotations

import ast
from pathlib import Path

import opentelemetry.semconv._incubating.attributes as semconv_attributes
import pytest

from supervisor.export.otlp_attributes import (
    COMMON,
    TRACER_CONSTANTS,
    TRACER_FIELDS,
    EventMapper,
    attribute_value,
    metric_attributes,
)

HEADER = ["ts", "pid", "tid", "uid", "gid", "comm", "cgroup_id"]


def _semconv() -> dict[str, str]:
    """Every attribute the conventions define → its description (from the generated modules)."""
    names: dict[str, str] = {}
    for path in Path(semconv_attributes.__path__[0]).glob("*_attributes.py"):
        body = ast.parse(path.read_text()).body
        for node, after in zip(body, [*body[1:], None], strict=True):
            if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant):
                doc = after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) else ""
                names[node.value.value] = str(doc)
    return names


def test_every_convention_name_is_current_semconv() -> None:
    conventions = _semconv()
    used = {*COMMON.values(), *(n for fields in TRACER_FIELDS.values() for names in fields.values() for n in names),
            *(n for consts in TRACER_CONSTANTS.values() for n in consts)}
    ours = {n for n in used if n.startswith("eunomia.")}
    assert ours == {"eunomia.gid", "eunomia.cgroup_id"}
    for name in used - ours:
        assert name in conventions, f"{name} is not in the semantic conventions"
        assert not conventions[name].startswith("Deprecated"), f"{name}: {conventions[name]}"


def test_process_exec_row() -> None:
    mapper = EventMapper("process", [*HEADER, "duration_ns", "ppid", "exit_code", "exit_signal", "argc", "event",
                                     "args_truncated", "filename", "argv"])
    row = [1_700_000_000_123_456_789, 4242, 4243, 1000, 1001, "my prog", 9876, None, 1, None, None, 3, "exec", 0,
           "/usr/bin/my", ["/usr/bin/my", "-x", "two words"]]
    assert mapper.attributes(row) == {
        "process.pid": 4242, "thread.id": 4243, "process.real_user.id": 1000, "eunomia.gid": 1001,
        "process.executable.name": "my prog", "eunomia.cgroup_id": 9876, "process.parent_pid": 1,
        "process.args_count": 3, "eunomia.process.event": "exec", "eunomia.process.args_truncated": 0,
        "process.executable.path": "/usr/bin/my", "process.command_args": ["/usr/bin/my", "-x", "two words"],
    }
    assert mapper.body(row) == "my prog[4242] ppid=1 argc=3 event=exec args_truncated=0 filename=/usr/bin/my " \
                               "argv=/usr/bin/my -x two words"
    exit_row = [1, 4242, 4242, 0, 0, "my", 1, 5_000_000, None, 7, 0, None, "exit", None, None, None]
    assert mapper.attributes(exit_row) == {
        "process.pid": 4242, "thread.id": 4242, "process.real_user.id": 0, "eunomia.gid": 0,
        "process.executable.name": "my", "eunomia.cgroup_id": 1, "eunomia.process.duration_ns": 5_000_000,
        "process.exit.code": 7, "eunomia.process.exit_signal": 0, "eunomia.process.event": "exit",
    }


def test_tcpconnect_row_fills_server_and_peer() -> None:
    mapper = EventMapper("tcpconnect", [*HEADER, "latency_ns", "family", "sport", "dport", "result", "saddr", "daddr"])
    attrs = mapper.attributes([1, 10, 10, 0, 0, "curl", 2, 1500, 6, 40000, 443, "established", "::1", "::1"])
    assert attrs == {
        "network.transport": "tcp", "process.pid": 10, "thread.id": 10, "process.real_user.id": 0,
        "eunomia.gid": 0, "process.executable.name": "curl", "eunomia.cgroup_id": 2,
        "eunomia.tcpconnect.latency_ns": 1500, "network.type": "ipv6", "network.local.port": 40000,
        "server.port": 443, "network.peer.port": 443, "eunomia.tcpconnect.result": "established",
        "network.local.address": "::1", "server.address": "::1", "network.peer.address": "::1",
    }


def test_container_fields_and_unknown_tracers() -> None:
    mapper = EventMapper("mytracer", [*HEADER, "container_id", "container_name", "container_image",
                                      "container_runtime", "k8s_pod_name", "k8s_namespace", "k8s_pod_uid",
                                      "k8s_container_name", "path", "location"])
    attrs = mapper.attributes([1, 1, 1, 0, 0, "c", 3, "abc123", "web", "nginx:1.25", "docker", "web-0", "prod",
                               "uid-1", "nginx", "/etc/x", 0xffffffff81000000])
    assert {k: v for k, v in attrs.items() if not k.startswith(("process.", "thread.", "eunomia.gid",
                                                                  "eunomia.cgroup"))} == {
        "container.id": "abc123", "container.name": "web", "container.image.name": "nginx:1.25",
        "container.runtime.name": "docker", "k8s.pod.name": "web-0", "k8s.namespace.name": "prod",
        "k8s.pod.uid": "uid-1", "k8s.container.name": "nginx", "eunomia.mytracer.path": "/etc/x",
        "eunomia.mytracer.location": str(0xffffffff81000000),  # over int64: text
    }


@pytest.mark.parametrize(("value", "expected"), [
    (5, 5), (-(2**63), -(2**63)), (2**63, str(2**63)), (1.5, 1.5), (True, True), ("x", "x"),
    ([1, 2], [1, 2]), ([1, "a"], ["1", "a"]), (b"\x01\xff", "01ff"), (None, "None"),
])
def test_attribute_values(value: object, expected: object) -> None:
    assert attribute_value(value) == expected


def test_metric_labels() -> None:
    labels = {"pid": "42", "comm": "nginx", "tid": "43", "syscall": "read", "instance": "x-1", "tracer": "x",
              "le": "0.5", "container_id": "abc", "path": "/p"}
    assert metric_attributes(labels) == {"process.pid": 42, "process.executable.name": "nginx", "thread.id": 43,
                                         "syscall": "read", "container.id": "abc", "path": "/p"}
    assert metric_attributes({"pid": "not-a-number"}) == {"process.pid": "not-a-number"}
