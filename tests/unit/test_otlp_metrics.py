"""Kernel totals → cumulative OpenTelemetry metrics: kinds, start times, resets, buckets, bounds."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, Histogram, Sum
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from supervisor.export.otlp_metrics import STALE_AFTER, MetricState, parse_samples, unit_of
from supervisor.sinks import flatten_samples

SCOPE = InstrumentationScope("eunomia", "test")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _state(wants: Any = lambda name: True, max_series: int = 1000, clock: Clock | None = None) -> MetricState:
    return MetricState(wants, max_series, lambda i, t: Resource({"eunomia.instance": i, "eunomia.tracer": t}),
                       SCOPE, clock or Clock())


def _flat(raw: list[dict[str, Any]], instance: str = "syscount-1", tracer: str = "syscount") -> list:
    return flatten_samples(raw, {"instance": instance, "tracer": tracer})


def _counter(value: int, syscall: str = "read") -> dict[str, Any]:
    return {"name": "syscount_calls_total", "type": "counter", "labels": {"syscall": syscall}, "value": value}


def _metrics(state: MetricState) -> dict[str, Any]:
    batch = state.collect()
    assert batch is not None
    out = {}
    for rm in batch.data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[(rm.resource.attributes["eunomia.instance"], metric.name)] = metric
    state.done(batch)
    return out


def _points(metric: Any) -> dict[tuple, Any]:
    return {tuple(sorted(p.attributes.items())): p for p in metric.data.data_points}


def test_kinds_units_and_resources() -> None:
    state = _state()
    raw = [_counter(10),
           {"name": "syscount_latency_seconds", "type": "histogram", "labels": {"syscall": "read"},
            "buckets": [[1e-9, 1], [2e-9, 3], [4e-9, 7]], "count": 7, "sum": 2.5e-8},
           {"name": "files_open", "type": "gauge", "labels": {"pid": "7"}, "value": 3.5}]
    assert state.ingest("syscount-1", 1000, _flat(raw)) == 0
    metrics = _metrics(state)
    calls = metrics[("syscount-1", "eunomia_syscount_calls_total")]
    assert isinstance(calls.data, Sum) and calls.data.is_monotonic
    assert calls.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    (point,) = calls.data.data_points
    assert (point.value, point.start_time_unix_nano, point.time_unix_nano) == (10, 1000, 1000)
    assert isinstance(point.value, int) and dict(point.attributes) == {"syscall": "read"}
    latency = metrics[("syscount-1", "eunomia_syscount_latency_seconds")]
    assert isinstance(latency.data, Histogram) and latency.unit == "s"
    (h,) = latency.data.data_points
    assert list(h.explicit_bounds) == [1e-9, 2e-9, 4e-9]
    assert list(h.bucket_counts) == [1, 2, 4, 0] and h.count == 7 and h.sum == 2.5e-8
    gauge = metrics[("syscount-1", "eunomia_files_open")]
    assert isinstance(gauge.data, Gauge)
    assert gauge.data.data_points[0].value == 3.5 and dict(gauge.data.data_points[0].attributes) == {"process.pid": 7}
    assert state.collect() is None  # nothing changed since


def test_start_times_new_streams_and_resets() -> None:
    state = _state()
    state.ingest("syscount-1", 1000, _flat([_counter(10)]))
    state.ingest("syscount-1", 2000, _flat([_counter(15), _counter(4, "write")]))
    points = _points(_metrics(state)[("syscount-1", "eunomia_syscount_calls_total")])
    read, write = points[(("syscall", "read"),)], points[(("syscall", "write"),)]
    assert (read.value, read.start_time_unix_nano, read.time_unix_nano) == (15, 1000, 2000)  # since the first set
    assert (write.value, write.start_time_unix_nano) == (4, 1000)  # it was 0 at the previous set
    state.ingest("syscount-1", 3000, _flat([_counter(2), _counter(9, "write")]))  # read went down: a restart
    points = _points(_metrics(state)[("syscount-1", "eunomia_syscount_calls_total")])
    assert (points[(("syscall", "read"),)].value, points[(("syscall", "read"),)].start_time_unix_nano) == (2, 2000)
    assert points[(("syscall", "write"),)].start_time_unix_nano == 1000


def test_histogram_bounds_are_the_union_of_the_kernel_slots() -> None:
    state = _state()
    small = {"name": "runqlat_latency_seconds", "type": "histogram", "labels": {"pid": "1", "comm": "a"},
             "buckets": [[1e-9, 0], [2e-9, 2]], "count": 2, "sum": 3e-9}
    large = {"name": "runqlat_latency_seconds", "type": "histogram", "labels": {"pid": "2", "comm": "b"},
             "buckets": [[1e-9, 1], [2e-9, 1], [4e-9, 1], [8e-9, 5]], "count": 5, "sum": 2e-8}
    state.ingest("runqlat-1", 1000, _flat([small, large], "runqlat-1", "runqlat"))
    points = _points(_metrics(state)[("runqlat-1", "eunomia_runqlat_latency_seconds")])
    a = points[(("process.executable.name", "a"), ("process.pid", 1))]
    b = points[(("process.executable.name", "b"), ("process.pid", 2))]
    assert list(a.explicit_bounds) == list(b.explicit_bounds) == [1e-9, 2e-9, 4e-9, 8e-9]
    assert list(a.bucket_counts) == [0, 2, 0, 0, 0] and a.count == 2
    assert list(b.bucket_counts) == [1, 0, 0, 4, 0] and b.count == 5
    assert sum(b.bucket_counts) == b.count


def test_metric_filter_series_bound_and_dirty_tracking() -> None:
    state = _state(wants=lambda name: name != "eunomia_syscount_errors_total", max_series=2)
    raw = [_counter(1, "read"), _counter(1, "write"), _counter(1, "close"),
           {"name": "syscount_errors_total", "type": "counter", "labels": {"syscall": "close"}, "value": 1}]
    assert state.ingest("syscount-1", 1000, _flat(raw)) == 1  # one stream over the bound
    assert state.series == 2
    batch = state.collect()
    assert batch is not None and batch.points == 2 and batch.per_instance == {"syscount-1": 2}
    assert state.ingest("syscount-1", 2000, _flat(raw)) == 1  # newer data while the batch was out: stays pending
    state.done(batch)
    assert state.pending()
    again = state.collect()
    assert again is not None and again.points == 2
    names = {m.name for rm in again.data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert names == {"eunomia_syscount_calls_total"}
    kept = _points(again.data.resource_metrics[0].scope_metrics[0].metrics[0])
    assert set(kept) == {(("syscall", "read"),), (("syscall", "write"),)}  # the streams held before stay


def test_stale_metrics_are_forgotten() -> None:
    clock = Clock()
    state = _state(clock=clock)
    state.ingest("syscount-1", 1000, _flat([_counter(1)]))
    state.ingest("syscount-2", 1000, _flat([_counter(1)], "syscount-2"))
    clock.now += STALE_AFTER / 2
    state.ingest("syscount-2", 2000, _flat([_counter(2)], "syscount-2"))
    clock.now += STALE_AFTER / 2 + 1
    state.ingest("syscount-2", 3000, _flat([_counter(3)], "syscount-2"))
    assert set(state.families) == {("syscount-2", "eunomia_syscount_calls_total")} and state.series == 1


def test_parse_samples_ignores_garbage_and_units() -> None:
    parsed = parse_samples([("a_total", {}, "x"), ("b_total", {}, float("nan")), "junk",  # type: ignore[list-item]
                            ("h_bucket", {"le": "bad"}, 1.0), ("h_count", {}, 1.0), ("c_total", {}, 2.0)])
    assert set(parsed) == {"h", "c_total"}
    assert parsed["h"][1][()] == {"buckets": {}, "count": 1.0}
    assert [unit_of(n) for n in ("x_seconds", "x_bytes_total", "x_nanoseconds_total", "x_total")] == \
        ["s", "By", "ns", ""]


def test_a_metric_with_a_fraction_stays_in_doubles() -> None:
    state = _state()
    seconds = {"name": "offcputime_offcpu_seconds_total", "type": "counter", "labels": {}, "value": 2}
    state.ingest("offcputime-1", 1000, _flat([_counter(3), seconds], "offcputime-1", "offcputime"))
    metrics = _metrics(state)
    (calls,) = metrics[("offcputime-1", "eunomia_syscount_calls_total")].data.data_points
    (offcpu,) = metrics[("offcputime-1", "eunomia_offcputime_offcpu_seconds_total")].data.data_points
    assert isinstance(calls.value, int) and isinstance(offcpu.value, float) and offcpu.value == 2.0
    state.ingest("offcputime-1", 2000, _flat([_counter(3.5)], "offcputime-1", "offcputime"))
    state.ingest("offcputime-1", 3000, _flat([_counter(4)], "offcputime-1", "offcputime"))
    (calls,) = _metrics(state)[("offcputime-1", "eunomia_syscount_calls_total")].data.data_points
    assert isinstance(calls.value, float) and calls.value == 4.0
