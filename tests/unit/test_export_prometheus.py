"""The prometheus handler's selection rules, and GET /metrics as Prometheus parses it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.export import ExportConfigError, Exports
from supervisor.export.collector import agent_registry
from supervisor.export.naming import naming_problems
from supervisor.export.promrules import Histogram, parse_rules, series_by_metric
from supervisor.sinks import flatten_samples
from supervisor.states import State
from workers.catalog import Catalog, default_search_path
from workers.spec import Metric


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.discover(default_search_path())


def _worker_samples(connects: dict[tuple[str, str], int], latencies: dict[int, int]) -> list[dict[str, Any]]:
    """What tcpconnect's worker sends: the counter per (family, dport), and the log2 histogram."""
    out: list[dict[str, Any]] = [{"name": "tcp_connects_total", "type": "counter",
                                  "labels": {"family": f, "dport": p}, "value": n} for (f, p), n in connects.items()]
    cumulative, buckets = 0, []
    for slot in range(max(latencies) + 1):
        cumulative += latencies.get(slot, 0)
        buckets.append([2.0**slot * 1e-9, cumulative])
    out.append({"name": "tcp_connect_latency_seconds", "type": "histogram", "labels": {}, "buckets": buckets,
                "count": cumulative, "sum": 1e-6})
    return out


def _frame(instance: str, **kw: Any) -> list[Any]:
    return flatten_samples(_worker_samples(**kw), {"instance": instance, "tracer": "tcpconnect"})


CONNECTS = {("4", "80"): 3, ("6", "80"): 2, ("4", "443"): 5}


def _metrics(catalog: Catalog) -> list[Metric]:
    return list(catalog.get("tcpconnect").spec.metrics)


def test_series_are_rebuilt_from_flattened_samples(catalog: Catalog) -> None:
    series = series_by_metric(_metrics(catalog), _frame("t-1", connects=CONNECTS, latencies={12: 2, 14: 1}))
    counters = series["eunomia_tcp_connects_total"]
    assert counters[(("dport", "80"), ("family", "4"), ("instance_id", "t-1"), ("tracer", "tcpconnect"))] == 3.0
    (hist,) = series["eunomia_tcp_connect_latency_seconds"].values()
    assert isinstance(hist, Histogram)
    assert hist.bounds == [2.0**s * 1e-9 for s in range(15)] and hist.cumulative[-3:] == [2, 2, 3]
    assert (hist.count, hist.sum) == (3, 1e-6)


@pytest.mark.parametrize(("args", "expected"), [
    ([], ["eunomia_tcp_connects_total -> eunomia_tcp_connects_total",
          "eunomia_tcp_connect_latency_seconds -> eunomia_tcp_connect_latency_seconds"]),
    (["tcp_connect_*"], ["eunomia_tcp_connect_latency_seconds -> eunomia_tcp_connect_latency_seconds"]),
    (["eunomia_tcp_connects_total{dport}"], ["eunomia_tcp_connects_total -> eunomia_tcp_connects_total by dport"]),
    (["eunomia_tcp_v4_counter"], ["eunomia_tcp_connects_total -> eunomia_tcp_v4_counter_total"]),
    (['v4_connects_total=tcp_connects_total{family="4",dport}'],
     ['eunomia_tcp_connects_total -> eunomia_v4_connects_total where family="4" by dport']),
    (["tcp_connects_total{family!=4}"], ['eunomia_tcp_connects_total -> eunomia_tcp_connects_total where family!="4"']),
    (["tcp_connects_total{}"], ["eunomia_tcp_connects_total -> eunomia_tcp_connects_total summed"]),
])
def test_rules(catalog: Catalog, args: list[str], expected: list[str]) -> None:
    assert [r.describe() for r in parse_rules(_metrics(catalog), args)] == expected


@pytest.mark.parametrize(("args", "needle"), [
    (["nosuch_*"], "argument 'nosuch_*': matches none of the tracer's metrics (tcp_connects_total, "
                   "tcp_connect_latency_seconds)"),
    (["x=tcp_*"], "a new name needs exactly one metric; 'tcp_*' matches tcp_connects_total, "
                  "tcp_connect_latency_seconds"),
    (["tcp_connects_total{port}"], "no label 'port' (labels: cgroup_id, dport, family)"),
    (["tcp_connects_total{instance_id}"], "'instance_id' is always kept"),
    (["tcp_connects_total{family=~\"4\"}"], "cannot read the labels"),
    (["lat_total=tcp_connect_latency_seconds"], "only counters end in _total"),
    (["instance_events_total=tcp_connects_total"], "is reserved for the agent's own metrics"),
    (["tcp_connects_total", "tcp_connects_total{dport}"], "exports eunomia_tcp_connects again"),
    (["a b"], "expected [NEW_NAME=]METRIC[{labels}]"),
])
def test_bad_rules_name_the_argument(catalog: Catalog, args: list[str], needle: str) -> None:
    with pytest.raises(ExportConfigError) as info:
        parse_rules(_metrics(catalog), args)
    assert str(info.value).startswith("export handler 'prometheus': argument ")
    assert needle in str(info.value)


def test_eunomia_bare_name_needs_a_counter(catalog: Catalog) -> None:
    with pytest.raises(ExportConfigError, match="the tracer has no counter"):
        parse_rules(list(catalog.get("biolatency").spec.metrics), ["eunomia_disk_counter"])


def test_filter_and_sum_by_labels(catalog: Catalog) -> None:
    series = series_by_metric(_metrics(catalog), _frame("t-1", connects=CONNECTS, latencies={3: 1}))
    (v4,) = parse_rules(_metrics(catalog), ['v4=tcp_connects_total{family="4"}'])
    assert sorted((dict(k)["dport"], v) for k, v in v4.apply(series[v4.source]).items()) == [("443", 5.0), ("80", 3.0)]
    (by_port,) = parse_rules(_metrics(catalog), ["tcp_connects_total{dport}"])
    assert {dict(k)["dport"]: v for k, v in by_port.apply(series[by_port.source]).items()} == {"80": 5.0, "443": 5.0}
    assert all(set(dict(k)) == {"dport", "instance_id", "tracer"} for k in by_port.apply(series[by_port.source]))
    (total,) = parse_rules(_metrics(catalog), ["tcp_connects_total{}"])
    assert list(total.apply(series[total.source]).values()) == [10.0]


def test_histograms_add_bucket_by_bucket_over_different_bounds() -> None:
    a = Histogram([1.0, 2.0], [1, 3], 3, 4.0)
    b = Histogram([1.0, 2.0, 4.0, 8.0], [0, 0, 2, 5], 5, 30.0)
    total = a.add(b)
    assert (total.bounds, total.cumulative, total.count, total.sum) == ([1.0, 2.0, 4.0, 8.0], [1, 3, 5, 8], 8, 34.0)


# -- GET /metrics -----------------------------------------------------------------------------
def _supervisor(watchers: list[Any]) -> Any:
    sup = SimpleNamespace(watchers={w.id: w for w in watchers},
                          stats=SimpleNamespace(bad_frames=2, unknown_instance_frames=1))

    def describe(w: Any) -> dict[str, Any]:
        drops = {"kernel": 1, "ipc": 0, "hook": 0, "store": 0, "exporter": 0}
        for hop, n in w.export.drops().items():
            drops[hop] += n
        return {"events": 10, "restarts": 1, "drops": drops, "export_handlers": w.export.describe(),
                "worker": {"cpu_seconds": 1.5, "rss_kib": 100, "pss_kib": 50, "private_dirty_kib": 30,
                           "private_clean_kib": 10}}

    sup.describe = describe
    return sup


def _watcher(exports: Exports, catalog: Catalog, instance: str, handlers: list[dict[str, Any]]) -> Any:
    tracer = catalog.get("tcpconnect")
    return SimpleNamespace(id=instance, tracer=tracer, state=State.RUNNING,
                           export=exports.open(instance, tracer, handlers))


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_exposition_parses_with_real_types_and_only_configured_instances(catalog: Catalog) -> None:
    exports = Exports()
    a = _watcher(exports, catalog, "tcp-a", [{"name": "prometheus"}])
    b = _watcher(exports, catalog, "tcp-b", [{"name": "prometheus", "args": ['v4=tcp_connects_total{family="4"}']}])
    c = _watcher(exports, catalog, "tcp-c", [])  # no prometheus handler: only its self-metrics
    for w, connects in ((a, CONNECTS), (b, {("4", "22"): 7, ("6", "22"): 1}), (c, {("4", "9"): 100})):
        w.export.samples(w.id, 1, _frame(w.id, connects=connects, latencies={10: 4, 11: 1}))
    text = generate_latest(agent_registry(_supervisor([a, b, c]))).decode()
    families = _families(text)

    connects = families["eunomia_tcp_connects"]
    assert connects.type == "counter"
    got = {(s.labels["instance_id"], s.labels["family"], s.labels["dport"]): s.value for s in connects.samples}
    assert got == {("tcp-a", "4", "80"): 3, ("tcp-a", "6", "80"): 2, ("tcp-a", "4", "443"): 5}
    assert all(s.name == "eunomia_tcp_connects_total" for s in connects.samples)
    assert [(s.labels, s.value) for s in families["eunomia_v4"].samples] == [
        ({"dport": "22", "family": "4", "instance_id": "tcp-b", "tracer": "tcpconnect"}, 7.0)]

    latency = families["eunomia_tcp_connect_latency_seconds"]
    assert latency.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in latency.samples if s.name.endswith("_bucket")]
    assert buckets[0] == ("1e-09", 0) and buckets[-2:] == [(repr(2.0**11 * 1e-9), 5), ("+Inf", 5)]
    assert {s.labels["instance_id"] for s in latency.samples} == {"tcp-a"}
    assert "tcp-c" not in text.split("# HELP eunomia_instance_events")[0]  # its data went to no handler

    events = {s.labels["instance_id"]: s.value for s in families["eunomia_instance_events"].samples}
    assert events == {"tcp-a": 10, "tcp-b": 10, "tcp-c": 10}
    state = {(s.labels["instance_id"], s.labels["state"]): s.value for s in families["eunomia_instance_state"].samples}
    assert state[("tcp-c", "running")] == 1 and state[("tcp-c", "fatal")] == 0
    drops = {s.labels["hop"] for s in families["eunomia_instance_dropped"].samples}
    assert drops == {"kernel", "ipc", "hook", "store", "exporter"}
    memory = families["eunomia_worker_private_memory_bytes"].samples[0]
    assert memory.value == 40 * 1024
    assert families["eunomia_worker_cpu_seconds"].samples[0].name == "eunomia_worker_cpu_seconds_total"
    assert {s.labels["handler"] for s in families["eunomia_export_sent"].samples} == {"prometheus"}
    assert families["eunomia_bad_frames"].samples[0].value == 2
    assert "process_cpu_seconds" in families  # the agent process itself
    exports.close(timeout=1)


def test_self_metric_batches_do_not_wipe_the_latest_values(catalog: Catalog) -> None:
    exports = Exports()
    a = _watcher(exports, catalog, "tcp-a", [{"name": "prometheus"}])
    a.export.samples("tcp-a", 1, _frame("tcp-a", connects=CONNECTS, latencies={1: 1}))
    a.export.samples("tcp-a", 2, [("eunomia_instance_events_total", {"instance": "tcp-a"}, 5.0)])
    handler = a.export.entries[0].handler
    assert sum(len(f.series) for f in handler.families) == 4
    a.export.close()
    assert handler.families == []


def test_naming_check_reports_prometheus_mismatches(catalog: Catalog) -> None:
    from workers.spec import TracerSpec

    spec = TracerSpec.model_validate({
        "name": "demo", "description": "d", "probes": [{"tracepoint": "sched:sched_process_exec"}],
        "metrics": [
            {"name": "demo_wait_nanoseconds_total", "type": "counter", "help": "h"},
            {"name": "demo_latency", "type": "histogram", "help": "h", "scale": 1e-9},
            {"name": "demo_size_kb", "type": "histogram", "help": "h"},
            {"name": "demo_calls_total", "type": "counter", "help": "h",
             "labels": [{"name": "instance", "type": "u32"}, {"name": "pid", "type": "u32"}]},
        ]})
    problems = naming_problems(spec)
    assert any("demo_wait_nanoseconds_total" in p and "seconds" in p for p in problems)
    assert any("demo_latency" in p and "unit" in p for p in problems)
    assert any("demo_size_kb" in p and "bytes" in p for p in problems)
    assert any("'instance'" in p for p in problems)
    assert any("'pid'" in p and "cardinality" in p for p in problems)
    assert naming_problems(catalog.get("tcpconnect").spec) == []
