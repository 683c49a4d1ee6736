"""The otlp handler against a real OTLP/HTTP receiver on loopback, fed known rows and samples:
exact payloads, and what happens while the endpoint is down, refusing, or stuck."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.export.otlp import OtlpHandler, machine_id
from supervisor.sinks import flatten_samples
from tests.integration.agentctl import wait_for
from tests.integration.otlp_receiver import OtlpReceiver

HEADER = ["ts", "pid", "tid", "uid", "gid", "comm", "cgroup_id"]
PROCESS_COLUMNS = [*HEADER, "duration_ns", "ppid", "exit_code", "exit_signal", "argc", "event", "args_truncated",
                   "filename", "argv"]
TCP_COLUMNS = [*HEADER, "latency_ns", "family", "sport", "dport", "result", "saddr", "daddr"]
SEQ_COLUMNS = [*HEADER, "seq"]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def handlers() -> Iterator[list[OtlpHandler]]:
    made: list[OtlpHandler] = []
    yield made
    for handler in made:
        handler.close()


def _handler(handlers: list[OtlpHandler], args: Any, **kwargs: Any) -> OtlpHandler:
    handler = OtlpHandler(args, **kwargs)
    handlers.append(handler)
    return handler


def _seq_rows(first: int, count: int) -> list[list[Any]]:
    return [[1_700_000_000_000_000_000 + i, 1000, 1000, 0, 0, "seq", 1, i] for i in range(first, first + count)]


def _seqs(receiver: OtlpReceiver) -> list[int]:
    return sorted(r.attributes["eunomia.seq.seq"] for r in receiver.records())


def test_events_and_metrics_arrive_with_exact_content(receiver: OtlpReceiver, handlers: list[OtlpHandler]) -> None:
    handler = _handler(handlers, ["--endpoint", receiver.url, "--interval", "0.1", "--headers", "x-tenant=team-a",
                                  "--compression", "gzip", "--resource", "deployment.environment.name=test"],
                       resource={"k8s.node.name": "node-1"})
    exec_row = [1_700_000_000_123_456_789, 4242, 4243, 1000, 1001, "my prog", 9876, None, 1, None, None, 3, "exec",
                0, "/usr/bin/my", ["/usr/bin/my", "-x", "two words"]]
    exit_row = [1_700_000_001_000_000_000, 4242, 4242, 1000, 1001, "my prog", 9876, 5_000_000, None, 7, 0, None,
                "exit", None, None, None]
    tcp_row = [1_700_000_002_000_000_000, 77, 78, 0, 0, "curl", 5, 1500, 4, 40000, 443, "established",
               "127.0.0.1", "127.0.0.2"]
    handler.events("process-1", "process", PROCESS_COLUMNS, [exec_row, exit_row])
    handler.events("tcpconnect-1", "tcpconnect", TCP_COLUMNS, [tcp_row])
    raw = [{"name": "syscount_calls_total", "type": "counter", "labels": {"syscall": "getppid"}, "value": 1234},
           {"name": "syscount_latency_seconds", "type": "histogram", "labels": {"syscall": "getppid"},
            "buckets": [[1e-9, 0], [2e-9, 0], [4e-9, 10], [8e-9, 1234]], "count": 1234, "sum": 7.5e-6}]
    ts = 1_700_000_003_000_000_000
    handler.samples("syscount-1", ts, flatten_samples(raw, {"instance": "syscount-1", "tracer": "syscount"}))

    records = wait_for(lambda: len(r := receiver.records()) == 3 and r, 10, "three log records")
    by_pid = {(r.attributes["process.pid"], r.attributes.get("eunomia.process.event")): r for r in records}
    exec_rec, exit_rec, tcp_rec = by_pid[(4242, "exec")], by_pid[(4242, "exit")], by_pid[(77, None)]
    assert exec_rec.record.time_unix_nano == 1_700_000_000_123_456_789
    assert exec_rec.record.observed_time_unix_nano >= exec_rec.record.time_unix_nano
    assert exec_rec.record.event_name == "eunomia.process" and exec_rec.scope == "eunomia"
    assert exec_rec.record.body.string_value == ("my prog[4242] ppid=1 argc=3 event=exec args_truncated=0 "
                                                 "filename=/usr/bin/my argv=/usr/bin/my -x two words")
    assert exec_rec.attributes == {
        "process.pid": 4242, "thread.id": 4243, "process.real_user.id": 1000, "eunomia.gid": 1001,
        "process.executable.name": "my prog", "eunomia.cgroup_id": 9876, "process.parent_pid": 1,
        "process.args_count": 3, "eunomia.process.event": "exec", "eunomia.process.args_truncated": 0,
        "process.executable.path": "/usr/bin/my", "process.command_args": ["/usr/bin/my", "-x", "two words"]}
    assert exit_rec.attributes["process.exit.code"] == 7 and "process.command_args" not in exit_rec.attributes
    assert exit_rec.attributes["eunomia.process.duration_ns"] == 5_000_000
    assert {k: v for k, v in tcp_rec.attributes.items() if k.startswith(("network.", "server."))} == {
        "network.transport": "tcp", "network.type": "ipv4", "network.local.address": "127.0.0.1",
        "network.local.port": 40000, "server.address": "127.0.0.2", "network.peer.address": "127.0.0.2",
        "server.port": 443, "network.peer.port": 443}
    resource = exec_rec.resource
    assert resource["service.name"] == "eunomia" and resource["host.name"] == socket.gethostname()
    assert resource["eunomia.instance"] == "process-1" and resource["eunomia.tracer"] == "process"
    assert resource["deployment.environment.name"] == "test" and resource["k8s.node.name"] == "node-1"
    assert resource.get("host.id") == machine_id() and resource["service.instance.id"]
    assert not any(k.startswith("process.") for k in resource)
    assert tcp_rec.resource["eunomia.tracer"] == "tcpconnect"

    (calls,) = wait_for(lambda: receiver.points("eunomia_syscount_calls_total"), 10, "the counter")
    assert calls.metric.sum.is_monotonic and calls.metric.sum.aggregation_temporality == 2  # cumulative
    assert calls.point.as_int == 1234 and calls.attributes == {"syscall": "getppid"}
    assert calls.point.time_unix_nano == ts and calls.point.start_time_unix_nano == ts
    assert calls.resource["eunomia.instance"] == "syscount-1" and calls.resource["eunomia.tracer"] == "syscount"
    (latency,) = wait_for(lambda: receiver.points("eunomia_syscount_latency_seconds"), 10, "the histogram")
    assert latency.metric.unit == "s" and latency.metric.histogram.aggregation_temporality == 2
    assert list(latency.point.explicit_bounds) == [1e-9, 2e-9, 4e-9, 8e-9]
    assert list(latency.point.bucket_counts) == [0, 0, 10, 1224, 0]
    assert latency.point.count == 1234 and latency.point.sum == 7.5e-6
    assert not latency.point.HasField("min") and not latency.point.HasField("max")  # the kernel keeps neither

    paths = {path for path, _ in receiver.requests}
    assert paths == {"/v1/logs", "/v1/metrics"}
    assert all(h["x-tenant"] == "team-a" and h["content-encoding"] == "gzip" for _, h in receiver.requests)
    # the receiver records a request before the handler has its answer and counts it as sent
    stats = wait_for(lambda: (s := handler.stats())["sent_points"] == 2 and s["queued"] == 0 and s, 10,
                     "the last answers to be counted")
    assert (stats["sent_events"], stats["sent_points"], stats["dropped"], stats["errors"], stats["queued"]) == \
           (3, 2, 0, 0, 0)


def test_only_new_metric_points_are_sent_and_filters_apply(receiver: OtlpReceiver,
                                                           handlers: list[OtlpHandler]) -> None:
    handler = _handler(handlers, {"endpoint": receiver.url, "interval": 0.1, "events": False,
                                  "metrics": "eunomia_syscount_*"})
    extra = {"instance": "syscount-1", "tracer": "syscount"}
    handler.events("process-1", "process", SEQ_COLUMNS, _seq_rows(0, 5))  # events are off: not sent
    for value, ts in ((10, 1000), (25, 2000)):
        handler.samples("syscount-1", ts, flatten_samples(
            [{"name": "syscount_calls_total", "type": "counter", "labels": {"syscall": "read"}, "value": value},
             {"name": "process_execs_total", "type": "counter", "labels": {"comm": "sh"}, "value": 1}], extra))
        wait_for(lambda v=value: any(p.point.as_int == v for p in receiver.points()), 10, f"the value {value}")
    handler.close()
    points = receiver.points()
    assert [(p.metric.name, p.point.as_int, p.point.start_time_unix_nano, p.point.time_unix_nano)
            for p in points] == [("eunomia_syscount_calls_total", 10, 1000, 1000),
                                 ("eunomia_syscount_calls_total", 25, 1000, 2000)]
    assert receiver.records() == [] and handler.stats()["sent_events"] == 0


def test_endpoint_down_then_up_loses_nothing_within_the_bound(receiver: OtlpReceiver,
                                                             handlers: list[OtlpHandler]) -> None:
    receiver.stop()  # down: connection refused
    handler = _handler(handlers, ["--endpoint", receiver.url, "--interval", "0.1", "--timeout", "1",
                                  "--queue", "50", "--batch", "20"])
    handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(0, 30))
    wait_for(lambda: handler.stats()["errors"] >= 2, 20, "failed, retried exports")
    handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(30, 30))  # room for 20 of them
    handler.events("seq-2", "seq", SEQ_COLUMNS, _seq_rows(60, 5))  # room for none
    counter = [{"name": "seq_total", "type": "counter", "labels": {}, "value": v} for v in (1, 2, 3)]
    for ts, sample in enumerate(counter, start=1):  # cumulative: the latest one carries every count
        handler.samples("seq-1", ts, flatten_samples([sample], {"instance": "seq-1", "tracer": "seq"}))
    stats = handler.stats()
    assert stats["retrying"] and stats["queued"] == 50 and stats["sent"] == 0
    assert stats["dropped_events"] == 15 and handler.dropped("seq-1") == 10 and handler.dropped("seq-2") == 5
    assert "Connection" in stats["last_error"] and receiver.url in stats["last_error"]

    receiver.start()  # up again, same port
    wait_for(lambda: len(receiver.records()) >= 50, 40, "the 50 queued events")
    assert _seqs(receiver) == list(range(50))  # the first 50, each once, in order of arrival
    (point,) = wait_for(lambda: receiver.points("eunomia_seq_total"), 20, "the counter")
    assert point.point.as_int == 3 and point.point.start_time_unix_nano == 1
    # the receiver records a batch before the handler has its answer and counts it as sent
    stats = wait_for(lambda: (s := handler.stats())["queued"] == 0 and s, 10, "the last answer to be counted")
    assert (stats["sent_events"], stats["dropped_events"], stats["queued"], stats["dropped_points"]) == (50, 15, 0, 0)
    assert not stats["retrying"]


def test_503_is_retried_and_400_is_dropped(receiver: OtlpReceiver, handlers: list[OtlpHandler]) -> None:
    receiver.status = 503
    handler = _handler(handlers, ["--endpoint", receiver.url, "--interval", "0.1", "--timeout", "0.5"])
    handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(0, 3))
    wait_for(lambda: handler.stats()["errors"] >= 2, 20, "503 answers")
    assert "HTTP 503" in handler.stats()["last_error"] and handler.stats()["queued"] == 3
    receiver.status = 200
    wait_for(lambda: _seqs(receiver) == [0, 1, 2], 20, "the three events after the 503s")

    receiver.status = 400
    errors = handler.stats()["errors"]
    handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(3, 2))
    wait_for(lambda: handler.stats()["dropped_events"] == 2, 20, "the refused batch to be dropped")
    stats = handler.stats()
    assert stats["queued"] == 0 and stats["errors"] == errors + 1 and "HTTP 400" in stats["last_error"]
    assert handler.dropped("seq-1") == 2
    log_posts = [p for p, _ in receiver.requests if p == "/v1/logs"]
    receiver.status = 200
    handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(5, 1))
    wait_for(lambda: 5 in _seqs(receiver), 20, "the next event")
    assert len([p for p, _ in receiver.requests if p == "/v1/logs"]) == len(log_posts) + 1  # 400: never re-sent


def test_calls_never_wait_for_a_stuck_endpoint(handlers: list[OtlpHandler]) -> None:
    """A server that accepts connections and never answers: the export thread waits in its
    request, the caller's events()/samples()/stats() return at once all the same."""
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(16)
    held: list[socket.socket] = []
    try:
        handler = _handler(handlers, ["--endpoint", f"http://127.0.0.1:{stuck.getsockname()[1]}", "--interval",
                                      "0.05", "--timeout", "30", "--queue", "1000", "--flush-timeout", "0.5"])
        handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(0, 10))
        wait_for(lambda: _accept(stuck, held), 10, "the exporter to connect")
        done = threading.Event()

        def caller() -> None:
            for i in range(200):
                handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(10 + 10 * i, 10))
                handler.samples("seq-1", i, [("eunomia_seq_total", {"instance": "seq-1", "tracer": "seq"}, i)])
                handler.stats()
            done.set()

        thread = threading.Thread(target=caller, daemon=True)
        thread.start()
        assert done.wait(10), "events()/samples() blocked behind the stuck export"
        stats = handler.stats()
        assert stats["queued"] == 1000 and stats["dropped_events"] == 2010 - 1000 and stats["sent"] == 0
        begun = time.monotonic()
        handler.close()  # gives up after --flush-timeout; what is left counts as dropped
        assert time.monotonic() - begun < 10
        stats = handler.stats()
        assert stats["dropped_events"] == 2010 and stats["queued"] == 0
        assert stats["dropped_points"] == 200  # the sample sets the stuck thread never read
        handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(0, 1))  # after close: counted, not queued
        assert handler.stats()["dropped_events"] == 2011
    finally:
        for conn in [*held, stuck]:
            conn.close()


def _accept(server: socket.socket, held: list[socket.socket]) -> bool:
    server.settimeout(0.05)
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return False
    held.append(conn)  # kept open and silent
    return True


def test_bad_rows_are_counted_not_raised(receiver: OtlpReceiver, handlers: list[OtlpHandler]) -> None:
    handler = _handler(handlers, ["--endpoint", receiver.url, "--interval", "0.1"])
    handler.events("seq-1", "seq", SEQ_COLUMNS, [[1, 2, 3], *_seq_rows(0, 1), "garbage"])  # type: ignore[list-item]
    handler.samples("seq-1", 1, [("x_total", {}, "NaN?"), "junk"])  # type: ignore[list-item]
    wait_for(lambda: _seqs(receiver) == [0], 10, "the good row")
    wait_for(lambda: handler.stats()["dropped_events"] == 2, 10, "the bad rows counted")
    assert "are not rows of their 8 columns" in handler.stats()["last_error"]


def test_close_sends_what_is_queued(receiver: OtlpReceiver, handlers: list[OtlpHandler]) -> None:
    handler = _handler(handlers, ["--endpoint", receiver.url, "--interval", "60", "--batch", "7"])
    handler.events("seq-1", "seq", SEQ_COLUMNS, _seq_rows(0, 5))  # under a batch, an hour before it is due
    handler.samples("seq-1", 5, [("eunomia_seq_total", {"instance": "seq-1", "tracer": "seq"}, 5.0)])
    wait_for(lambda: handler.stats()["queued"] == 5, 5, "the events queued")
    assert receiver.records() == []
    handler.close()
    assert _seqs(receiver) == [0, 1, 2, 3, 4]
    assert [p.point.as_int for p in receiver.points("eunomia_seq_total")] == [5]
    stats = handler.stats()
    assert (stats["sent_events"], stats["sent_points"], stats["dropped"], stats["queued"]) == (5, 1, 0, 0)
