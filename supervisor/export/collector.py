"""``GET /metrics``: a prometheus_client collector over the agent's live state.

Three parts, all read at scrape time on the supervisor's loop:

* the metrics each instance's ``prometheus`` handler selected (families of the same name
  from several instances are merged; counters end in ``_total``; histograms are real
  histograms whose ``le`` buckets are the kernel's log2 slots);
* self-metrics of every instance, whatever its handlers: events, drops by hop, restarts,
  state, its worker's CPU and memory, and each export handler's counts;
* the agent's own: store, bad frames, build info (and ``process_*`` of the agent process).

It lives in a private registry: nothing is added to prometheus_client's global one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from supervisor import __version__
from supervisor.export.prometheus import PrometheusHandler
from supervisor.export.promrules import RESERVED_PREFIXES, Family, Histogram
from supervisor.states import State

if TYPE_CHECKING:
    from supervisor.arbiter import Supervisor
    from supervisor.store.writer import StoreWriter

KIB = 1024.0


class _Families:
    """Metric families by name, created on first use, in order."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}

    def get(self, name: str, help_text: str, type_: str) -> Metric:
        family = self.by_name.get(name)
        if family is None:
            family = self.by_name[name] = Metric(name, help_text, type_)
        return family

    def add(self, name: str, help_text: str, type_: str, labels: dict[str, str], value: float) -> None:
        sample = name + "_total" if type_ == "counter" else name
        self.get(name, help_text, type_).add_sample(sample, labels, float(value))


def _add_family(out: Metric, family: Family) -> None:
    for labels, value in family.series.items():
        base = dict(labels)
        if isinstance(value, Histogram):
            for bound, cumulative in zip(value.bounds, value.cumulative, strict=True):
                out.add_sample(family.name + "_bucket", {**base, "le": floatToGoString(bound)}, cumulative)
            out.add_sample(family.name + "_bucket", {**base, "le": "+Inf"}, value.count)
            out.add_sample(family.name + "_count", base, value.count)
            out.add_sample(family.name + "_sum", base, value.sum)
        else:
            out.add_sample(family.name + "_total", base, value)


class AgentCollector:
    def __init__(self, supervisor: Supervisor, store: StoreWriter | None = None) -> None:
        self.supervisor = supervisor
        self.store = store
        self.conflicts = 0  # handler families skipped: same name as another of a different type

    def collect(self) -> Iterator[Metric]:
        yield from self._handler_families()
        yield from self._instances()
        yield from self._agent()

    def _handler_families(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        conflicts = 0
        for watcher in self.supervisor.watchers.values():
            export = watcher.export
            for entry in export.entries if export is not None else []:
                if not isinstance(entry.handler, PrometheusHandler):
                    continue
                for family in entry.handler.families:
                    if family.name.startswith(RESERVED_PREFIXES):
                        conflicts += 1
                        continue
                    out = merged.get(family.name)
                    if out is None:
                        out = merged[family.name] = Metric(family.name, family.help, family.type)
                    elif out.type != family.type:
                        conflicts += 1
                        continue
                    _add_family(out, family)
        self.conflicts = conflicts
        yield from merged.values()

    def _instances(self) -> Iterator[Metric]:
        f = _Families()
        for watcher in self.supervisor.watchers.values():
            info: dict[str, Any] = self.supervisor.describe(watcher)
            labels = {"instance_id": watcher.id, "tracer": watcher.tracer.name}
            f.add("eunomia_instance_events", "Events the supervisor received from the instance's worker.",
                  "counter", labels, info["events"])
            for hop, n in info["drops"].items():
                f.add("eunomia_instance_dropped", "Events lost, by the hop that lost them "
                      "(kernel, ipc, hook, store, exporter).", "counter", {**labels, "hop": hop}, n)
            f.add("eunomia_instance_restarts", "Times the instance's worker was restarted after a failure.",
                  "counter", labels, info["restarts"])
            for state in State:
                f.add("eunomia_instance_state", "1 for the instance's current state, 0 for the others.",
                      "gauge", {**labels, "state": state.value}, float(watcher.state is state))
            worker = info["worker"]
            if "cpu_seconds" in worker:
                f.add("eunomia_worker_cpu_seconds", "CPU time of the instance's current worker process.",
                      "counter", labels, worker["cpu_seconds"])
            if "rss_kib" in worker:
                f.add("eunomia_worker_resident_memory_bytes", "Resident memory of the instance's worker.",
                      "gauge", labels, worker["rss_kib"] * KIB)
            if "pss_kib" in worker:
                f.add("eunomia_worker_proportional_memory_bytes", "Proportional set size of the instance's "
                      "worker (shared pages divided among their users).", "gauge", labels, worker["pss_kib"] * KIB)
            if "private_dirty_kib" in worker:
                private = worker["private_dirty_kib"] + worker.get("private_clean_kib", 0)
                f.add("eunomia_worker_private_memory_bytes", "Memory only the instance's worker uses.",
                      "gauge", labels, private * KIB)
            for handler in info.get("export_handlers", []):
                hl = {**labels, "handler": handler["id"]}
                f.add("eunomia_export_sent", "Records (events and samples) an export handler delivered.",
                      "counter", hl, handler["sent"])
                f.add("eunomia_export_dropped_events", "Events an export handler lost (buffer full, or "
                      "undelivered at shutdown).", "counter", hl, handler["dropped"])
                f.add("eunomia_export_dropped_samples", "Samples an export handler lost.",
                      "counter", hl, handler["dropped_samples"])
                f.add("eunomia_export_errors", "Failed deliveries of an export handler (each is retried).",
                      "counter", hl, handler["errors"])
                f.add("eunomia_export_queued_records", "Records waiting in an export handler's buffer.",
                      "gauge", hl, handler["queued"])
        yield from f.by_name.values()

    def _agent(self) -> Iterator[Metric]:
        f = _Families()
        f.add("eunomia_build_info", "The agent's version.", "gauge", {"version": __version__}, 1)
        stats = self.supervisor.stats
        f.add("eunomia_bad_frames", "Malformed frames from workers, discarded.", "counter", {}, stats.bad_frames)
        f.add("eunomia_unknown_instance_frames", "Frames for an instance the supervisor does not know.",
              "counter", {}, stats.unknown_instance_frames)
        f.add("eunomia_export_conflicting_families", "Exported metric families left out of this scrape: their "
              "name is taken by one of another type or by the agent's own metrics.", "gauge", {}, self.conflicts)
        if self.store is not None:
            s = self.store.stats
            f.add("eunomia_store_events_written", "Events written to the SQLite store.", "counter", {},
                  s.events_written)
            f.add("eunomia_store_samples_written", "Samples written to the SQLite store.", "counter", {},
                  s.samples_written)
            f.add("eunomia_store_errors", "Failed store transactions.", "counter", {}, s.errors)
            f.add("eunomia_store_dropped_events", "Events the store lost (queue full or write failed).",
                  "counter", {}, sum(s.dropped.values()))
            f.add("eunomia_store_queued_rows", "Event rows waiting for the store's writer.", "gauge", {},
                  self.store.queued_rows)
        yield from f.by_name.values()


def agent_registry(supervisor: Supervisor, store: StoreWriter | None = None) -> CollectorRegistry:
    """A private registry with the agent's collector and the agent process's own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(supervisor, store))
    ProcessCollector(registry=registry)
    return registry
