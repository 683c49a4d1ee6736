"""``prometheus``: keep the latest values of the instance's selected metrics for ``GET /metrics``.

It runs on the supervisor's loop (an update is a few dict operations per series, no I/O);
the scrape reads what it holds through :class:`supervisor.export.collector.AgentCollector`.
"""

from __future__ import annotations

from typing import Any

from supervisor.export.args import HandlerOptions, parse_options
from supervisor.export.base import HandlerArgs, HandlerContext, HandlerStats
from supervisor.export.promrules import PREFIX, Family, Rule, parse_rules, series_by_metric
from supervisor.sinks import Sample
from workers.spec import Metric


class PrometheusOptions(HandlerOptions):
    rest = "metrics"

    metrics: list[str] = []


class PrometheusHandler:
    def __init__(self, instance: str, metrics: list[Metric], rules: list[Rule]) -> None:
        self.instance = instance
        self.metrics = metrics
        self.rules = rules
        self._names = {PREFIX + m.name for m in metrics}
        self._names |= {f"{n}_{part}" for n in self._names for part in ("bucket", "count", "sum")}
        self.families: list[Family] = []
        self._received = 0

    @classmethod
    def create(cls, args: HandlerArgs, context: HandlerContext) -> PrometheusHandler:
        options = parse_options("prometheus", PrometheusOptions, args)
        metrics = list(context.tracer.spec.metrics)
        return cls(context.instance, metrics, parse_rules(metrics, options.metrics))

    @property
    def claim(self) -> str:
        return f"GET /metrics for {self.instance}"  # one per instance: put every rule in the one handler

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        pass

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None:
        """A worker's metrics frame holds every series of its maps: it replaces the previous one.
        Batches without any of the tracer's metrics (the supervisor's self-metrics) are not
        for this handler: ``GET /metrics`` reads those from the supervisor itself."""
        if not any(name in self._names for name, _, _ in samples):
            return
        self._received += len(samples)
        series = series_by_metric(self.metrics, samples)
        self.families = [Family(rule.name, rule.type, rule.help, rule.apply(series.get(rule.source, {})))
                         for rule in self.rules]

    def dropped(self, instance: str) -> int:
        return 0

    def close(self) -> None:
        self.families = []

    @property
    def stats(self) -> HandlerStats:
        return HandlerStats(sent=self._received, detail={
            "exports": [rule.describe() for rule in self.rules],
            "series": sum(len(f.series) for f in self.families)})
