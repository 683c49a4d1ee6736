"""Metric samples → OpenTelemetry metrics data, cumulative, as the kernel already counted them.

Why the data is built here and not through the SDK's instruments: the kernel aggregates, so
what arrives every interval is already a running total (a counter's value, a histogram's
cumulative buckets). A synchronous instrument would count it again; an observable counter
(callbacks returning the latest totals) would do for counters but has no histogram
counterpart, takes the provider's start time as every stream's start (wrong for a stream
that appears later, and blind to a worker restart that sets the kernel's totals back to zero)
and would give every tracer instance the provider's one resource. So the latest point of each
stream is kept here and turned into the SDK's own data classes (``Sum``, ``Histogram``,
``Gauge`` in a ``MetricsData``) that its OTLP exporter encodes:

- names ending in ``_total`` → ``Sum``, monotonic, cumulative;
- ``<name>_bucket{le}`` + ``_count`` + ``_sum`` → an explicit-bucket ``Histogram`` whose
  bounds are the kernel's log2 bounds (``2**slot × scale``): the union of those seen for the
  metric, so every point of a metric has the same bounds until a larger value shows up;
- anything else → ``Gauge``.

Start times: a stream first seen in an instance's first sample set has an unknown start, so
its first point starts where it ends (the data model's rule for an unknown start); one that
appears later was zero at the previous sample set, which becomes its start; a total that
went down means the worker restarted, and the previous point's time becomes the new start.

Only what changed since the last successful export is sent: a newer sample set replaces an
older unsent one, losing no count because the values are cumulative.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from supervisor.export.otlp_attributes import metric_attributes

Sample = tuple[str, dict[str, str], float]
Key = tuple[tuple[str, str], ...]
CUMULATIVE = AggregationTemporality.CUMULATIVE
STALE_AFTER = 900.0  # seconds: a metric of an instance not updated this long is forgotten


@dataclass(slots=True)
class Stream:
    attributes: dict[str, Any]
    start: int
    value: float = 0.0  # counter or gauge value; a histogram's count
    total: float = 0.0  # a histogram's sum
    cumulative: dict[float, float] = field(default_factory=dict)  # a histogram's le → cumulative count


@dataclass(slots=True)
class Family:
    """One metric of one instance: its kind and latest streams."""

    kind: str  # "sum", "gauge" or "histogram"
    tracer: str
    ts: int
    streams: dict[Key, Stream]
    updated: float  # monotonic clock
    dirty: bool = True


@dataclass(slots=True)
class Batch:
    data: MetricsData
    points: int
    versions: dict[tuple[str, str], int]  # family → the ts it had when collected
    per_instance: dict[str, int]


def unit_of(name: str) -> str:
    base = name.removesuffix("_total")
    for suffix, unit in (("_nanoseconds", "ns"), ("_seconds", "s"), ("_bytes", "By")):
        if base.endswith(suffix):
            return unit
    return ""


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def parse_samples(samples: Iterable[Sample]) -> dict[str, tuple[str, dict[Key, dict[str, Any]]]]:
    """Prometheus-style series → {metric: (kind, {labels: parts})}; a histogram's parts are its
    buckets ({le: cumulative}), count and sum, the others' their value."""
    samples = [s for s in samples if isinstance(s, tuple) and len(s) == 3 and isinstance(s[1], dict)]
    histograms = {name[:-7] for name, labels, _ in samples if name.endswith("_bucket") and "le" in labels}
    out: dict[str, tuple[str, dict[Key, dict[str, Any]]]] = {}
    for name, labels, value in samples:
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isnan(value):
            continue
        base, _, part = name.rpartition("_")
        if base in histograms and part in ("bucket", "count", "sum"):
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            series = out.setdefault(base, ("histogram", {}))[1].setdefault(key, {"buckets": {}})
            if part == "bucket":
                try:
                    series["buckets"][float(labels["le"])] = value
                except ValueError:
                    continue
            else:
                series[part] = value
        else:
            kind = "sum" if name.endswith("_total") else "gauge"
            key = tuple(sorted(labels.items()))
            out.setdefault(name, (kind, {}))[1][key] = {"value": value}
    return out


class MetricState:
    """The latest point of every stream, per instance and metric, and what is left to send."""

    def __init__(self, wants: Callable[[str], bool], max_series: int, resource: Callable[[str, str], Resource],
                 scope: InstrumentationScope, clock: Callable[[], float] = time.monotonic) -> None:
        self.wants = wants
        self.max_series = max_series
        self.resource = resource
        self.scope = scope
        self.clock = clock
        self.families: dict[tuple[str, str], Family] = {}
        self.bounds: dict[str, set[float]] = {}
        self.doubles: set[str] = set()  # metrics sent as doubles
        self.series = 0

    def ingest(self, instance: str, ts: int, samples: list[Sample]) -> int:
        """Take one sample set of an instance; returns how many series were dropped (over max_series)."""
        dropped = 0
        now = self.clock()
        self._expire(now)
        for name, (kind, series) in parse_samples(samples).items():
            if not self.wants(name):
                continue
            key = (instance, name)
            old = self.families.get(key)
            if old is not None and old.kind != kind:
                old = None
            streams: dict[Key, Stream] = {}
            room = self.max_series - self.series + (len(old.streams) if old else 0)
            ordered = sorted(series, key=lambda k: old is None or k not in old.streams)  # known streams first
            for labels in ordered:
                if len(streams) >= room:
                    dropped += len(series) - len(streams)
                    break
                streams[labels] = self._stream(kind, name, labels, series[labels], ts, old)
            tracer = dict(next(iter(series), ())).get("tracer", "")
            self.series += len(streams) - (len(old.streams) if old else 0)
            self.families[key] = Family(kind, tracer, ts, streams, now)
        return dropped

    def _stream(self, kind: str, name: str, labels: Key, parts: dict[str, Any], ts: int,
                old: Family | None) -> Stream:
        prev = old.streams.get(labels) if old else None
        if kind == "histogram":
            buckets = parts["buckets"]
            value = parts.get("count", max(buckets.values(), default=0.0))
            self.bounds.setdefault(name, set()).update(b for b in buckets if math.isfinite(b))
        else:
            value = parts["value"]
            if not value.is_integer():
                self.doubles.add(name)
        if kind == "gauge":
            start = 0
        elif prev is None:
            start = old.ts if old is not None else ts  # zero at the previous set; else unknown
        elif value < prev.value:
            start = old.ts if old is not None else ts  # went down: the worker restarted after that
        else:
            start = prev.start
        stream = Stream(metric_attributes(dict(labels)), start, value)
        if kind == "histogram":
            stream.total = parts.get("sum", 0.0)
            stream.cumulative = {b: c for b, c in parts["buckets"].items() if math.isfinite(b)}
        return stream

    def _expire(self, now: float) -> None:
        for key, family in list(self.families.items()):
            if now - family.updated > STALE_AFTER:
                self.series -= len(family.streams)
                del self.families[key]

    def pending(self) -> bool:
        return any(f.dirty for f in self.families.values())

    def collect(self) -> Batch | None:
        """What changed since the last successful export, as the SDK's MetricsData."""
        by_instance: dict[str, list[Metric]] = {}
        tracers: dict[str, str] = {}
        versions: dict[tuple[str, str], int] = {}
        per_instance: dict[str, int] = {}
        points = 0
        for (instance, name), family in self.families.items():
            if not family.dirty or not family.streams:
                if not family.streams:
                    family.dirty = False
                continue
            by_instance.setdefault(instance, []).append(self._metric(name, family))
            tracers.setdefault(instance, family.tracer)
            versions[(instance, name)] = family.ts
            points += len(family.streams)
            per_instance[instance] = per_instance.get(instance, 0) + len(family.streams)
        if not by_instance:
            return None
        data = MetricsData(resource_metrics=[
            ResourceMetrics(resource=self.resource(instance, tracers[instance]),
                            scope_metrics=[ScopeMetrics(scope=self.scope, metrics=metrics, schema_url="")],
                            schema_url="")
            for instance, metrics in by_instance.items()])
        return Batch(data, points, versions, per_instance)

    def done(self, batch: Batch) -> None:
        """The batch was sent (or refused for good): its families are clean unless newer data came."""
        for key, ts in batch.versions.items():
            family = self.families.get(key)
            if family is not None and family.ts == ts:
                family.dirty = False

    def _metric(self, name: str, family: Family) -> Metric:
        ts = family.ts
        unit = unit_of(name)
        if family.kind == "histogram":
            bounds = sorted(self.bounds.get(name, ()))
            points = [self._histogram_point(s, bounds, ts) for s in family.streams.values()]
            return Metric(name=name, description="", unit=unit,
                          data=Histogram(data_points=points, aggregation_temporality=CUMULATIVE))
        # Integers while every value seen is one (exact counts); once a metric had a fraction
        # (a scaled counter) it stays in doubles, so its streams never switch type back.
        double = family.kind == "gauge" or unit == "s" or name in self.doubles
        number: Callable[[float], int | float] = float if double else _number
        numbers = [NumberDataPoint(attributes=s.attributes, start_time_unix_nano=s.start, time_unix_nano=ts,
                                   value=number(s.value)) for s in family.streams.values()]
        if family.kind == "sum":
            return Metric(name=name, description="", unit=unit,
                          data=Sum(data_points=numbers, aggregation_temporality=CUMULATIVE, is_monotonic=True))
        return Metric(name=name, description="", unit=unit, data=Gauge(data_points=numbers))

    @staticmethod
    def _histogram_point(stream: Stream, bounds: list[float], ts: int) -> HistogramDataPoint:
        known = sorted(stream.cumulative.items())
        counts: list[int] = []
        below, j, running = 0.0, 0, 0.0
        for bound in bounds:
            while j < len(known) and known[j][0] <= bound:
                running = known[j][1]
                j += 1
            counts.append(int(max(running - below, 0.0)))
            below = running
        counts.append(int(max(stream.value - below, 0.0)))
        return HistogramDataPoint(attributes=stream.attributes, start_time_unix_nano=stream.start,
                                  time_unix_nano=ts, count=int(stream.value), sum=stream.total,
                                  bucket_counts=counts, explicit_bounds=bounds, min=None, max=None)
