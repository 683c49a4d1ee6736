"""The ``otlp`` export handler: events as log records and metrics to an OTLP/HTTP endpoint.

The supervisor's loop only ever appends to bounded queues here (``events``/``samples`` take a
lock for a few appends and return); one background thread turns rows into log records and
sample sets into cumulative metrics (supervisor/export/otlp_metrics.py), and sends them with
the OpenTelemetry SDK's OTLP/HTTP exporters. When the endpoint is down or says "retry later"
(connection failure, timeout, HTTP 429/502/503/504), the batch stays at the head of the queue
and is tried again with exponential backoff; events that arrive while the queue holds
``queue`` records are dropped and counted, per instance. Any other refusal (HTTP 400, 401,
404 …) is final, as the OTLP specification says: that batch is dropped and counted. Nothing
raises into the caller; close() sends what it can within ``flush_timeout``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from supervisor import __version__
from supervisor.export.otlp_attributes import EventMapper
from supervisor.export.otlp_metrics import MetricState
from supervisor.export.otlp_options import OtlpOptions, parse_options

log = logging.getLogger("eunomia.export.otlp")

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
MAX_BACKOFF = 30.0
MAX_SAMPLE_SETS = 256  # sample sets waiting to be read by the thread (two per instance per interval)
THREAD_PREFIX = "eunomia-otlp"
_SERVICE_INSTANCE_NAMESPACE = uuid.UUID("4d63009a-8d0f-11ee-aad7-4c796ed8e320")  # the conventions' namespace
_COMPRESSION = {"none": Compression.NoCompression, "gzip": Compression.Gzip, "deflate": Compression.Deflate}
_EXPORTER_LOGGERS = ("opentelemetry.exporter.otlp.proto.http._log_exporter",
                     "opentelemetry.exporter.otlp.proto.http.metric_exporter",
                     "opentelemetry.exporter.otlp.common.http",
                     "opentelemetry.exporter.otlp.proto.common._internal")


class _QuietInOurThreads(logging.Filter):
    """The exporters log every failed attempt; ours are counted in stats() and logged once
    per outage by this handler instead, so the agent's log does not fill while an endpoint is down."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not threading.current_thread().name.startswith(THREAD_PREFIX)


_quiet = _QuietInOurThreads()
for _name in _EXPORTER_LOGGERS:
    logging.getLogger(_name).addFilter(_quiet)


class RecordingSession(requests.Session):
    """A requests session that remembers how its last request ended, so a failed export
    can be told apart: retry later (no answer, 429/502/503/504) or refused for good."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: int | None = None  # HTTP status of the last response
        self.error: str | None = None

    def reset(self) -> None:
        self.answered, self.error = None, None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        try:
            response = super().send(request, **kwargs)
        except Exception as exc:
            self.answered, self.error = None, f"{request.url}: {type(exc).__name__}: {exc}"
            raise
        self.answered = response.status_code
        if response.status_code >= 300:
            self.error = f"{request.url}: HTTP {response.status_code} {response.reason}: {response.text[:200]}"
        else:
            self.error = None
        return response


def machine_id() -> str | None:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            with open(path) as fh:
                value = fh.read().strip()
            if value:
                return value
    return None


def agent_resource(options: OtlpOptions, extra: dict[str, str] | None) -> Resource:
    """service.name=eunomia, host.*, service.instance.id (a UUID5 of the host, stable across
    restarts), OTEL_RESOURCE_ATTRIBUTES, then the caller's and the --resource attributes."""
    host = socket.gethostname()
    hid = machine_id()
    attributes: dict[str, Any] = {
        "service.name": "eunomia",
        "service.version": __version__,
        "service.instance.id": str(uuid.uuid5(_SERVICE_INSTANCE_NAMESPACE, f"eunomia:{hid or host}")),
        "host.name": host,
        "host.arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "os.type": "linux",
    }
    if hid:
        attributes["host.id"] = hid
    attributes.update(extra or {})
    attributes.update(options.resource)
    created = Resource.create(attributes)
    # process.* describes the traced processes in every record; the agent's own would mislead.
    return Resource({k: v for k, v in created.attributes.items() if not k.startswith("process.")},
                    created.schema_url)


@dataclass(slots=True)
class _Chunk:
    instance: str
    tracer: str
    columns: list[str]
    rows: list[list[Any]]
    received: int  # ns since the epoch: the records' observed time
    arrived: float  # the handler's clock: when it is due


@dataclass(slots=True)
class _LogBatch:
    records: list[ReadableLogRecord]
    rows: int  # rows taken from the queue (records + rows that could not be converted)
    per_instance: dict[str, int]


class _Backoff:
    def __init__(self, first: float) -> None:
        self.first = first
        self.delay = first
        self.until = 0.0
        self.failing = False
        self.warned = ""
        self.warned_at = 0.0

    def failed(self, now: float) -> None:
        self.until = now + self.delay
        self.delay = min(self.delay * 2, max(MAX_BACKOFF, self.first))
        self.failing = True

    def succeeded(self) -> None:
        self.delay, self.until, self.failing = self.first, 0.0, False


class OtlpHandler:
    """Export handler: see the module docstring and docs/otlp.md."""

    name = "otlp"

    def __init__(self, args: list[str] | dict[str, Any] | None = None, resource: dict[str, str] | None = None,
                 *, log_exporter: Any = None, metric_exporter: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = opts = parse_options(args)
        self.clock = clock
        self.resource = agent_resource(opts, resource)
        self.scope = InstrumentationScope("eunomia", __version__)
        self._resources: dict[tuple[str, str], Resource] = {}
        self._mappers: dict[tuple[str, tuple[str, ...]], EventMapper] = {}
        self.log_session, self.metric_session = RecordingSession(), RecordingSession()
        common = {"headers": opts.headers, "timeout": opts.timeout, "compression": _COMPRESSION[opts.compression],
                  "certificate_file": opts.certificate}
        self.log_exporter = log_exporter or OTLPLogExporter(endpoint=opts.logs_url, session=self.log_session,
                                                            **common)
        self.metric_exporter = metric_exporter or OTLPMetricExporter(
            endpoint=opts.metrics_url, session=self.metric_session, max_export_batch_size=5000, **common)
        self.metrics = MetricState(opts.wants_metric, opts.max_series, self._resource_for, self.scope, clock)

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._chunks: collections.deque[_Chunk] = collections.deque()
        self._queued = 0  # rows in _chunks and in the batch being sent
        self._sample_sets: collections.deque[tuple[str, int, list[Any]]] = collections.deque()
        self._inflight: _LogBatch | None = None
        self._log_backoff = _Backoff(opts.interval)
        self._metric_backoff = _Backoff(opts.interval)
        self._closed = False
        self._abandoned = False  # close() gave up on the thread and counted what it held

        self.sent_events = 0
        self.sent_points = 0
        self.dropped_events: dict[str, int] = {}
        self.dropped_points: dict[str, int] = {}
        self.errors = 0
        self.last_error: str | None = None

        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-{id(self):x}", daemon=True)
        self._thread.start()

    # -- the Sink protocol: called on the supervisor's loop, never blocks ------------------
    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        if not self.options.events or not rows:
            return
        try:
            wake = False
            with self._lock:
                room = 0 if self._closed else max(self.options.queue - self._queued, 0)
                taken = rows if len(rows) <= room else rows[:room]
                if taken:
                    self._chunks.append(_Chunk(instance, tracer, columns, taken, time.time_ns(), self.clock()))
                    self._queued += len(taken)
                    wake = self._queued >= self.options.batch
                if len(taken) < len(rows):
                    self.dropped_events[instance] = self.dropped_events.get(instance, 0) + len(rows) - len(taken)
            if wake:
                self._wake.set()
        except Exception as exc:  # never into the supervisor's loop
            self._note_error(f"events from {instance}: {type(exc).__name__}: {exc}")

    def samples(self, instance: str, ts: int, samples: list[tuple[str, dict[str, str], float]]) -> None:
        if not self.options.metrics or not samples:
            return
        try:
            with self._lock:
                if self._closed or len(self._sample_sets) >= MAX_SAMPLE_SETS:
                    self.dropped_points[instance] = self.dropped_points.get(instance, 0) + len(samples)
                    return
                self._sample_sets.append((instance, ts, samples))
        except Exception as exc:
            self._note_error(f"samples from {instance}: {type(exc).__name__}: {exc}")

    def dropped(self, instance: str) -> int:
        with self._lock:
            return self.dropped_events.get(instance, 0) + self.dropped_points.get(instance, 0)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            dropped_events = sum(self.dropped_events.values())
            dropped_points = sum(self.dropped_points.values())
            return {
                "endpoint": self.options.endpoint,
                "sent": self.sent_events + self.sent_points,
                "sent_events": self.sent_events,
                "sent_points": self.sent_points,
                "dropped": dropped_events + dropped_points,
                "dropped_events": dropped_events,
                "dropped_points": dropped_points,
                "errors": self.errors,
                "last_error": self.last_error,
                "queued": self._queued,
                "series": self.metrics.series,
                "retrying": self._log_backoff.failing or self._metric_backoff.failing,
            }

    def close(self) -> None:
        """Send what is queued (one try, no backoff) for at most ``flush_timeout`` seconds;
        what is left then is counted as dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._wake.set()
        self._thread.join(self.options.flush_timeout)
        for exporter in (self.log_exporter, self.metric_exporter):
            with contextlib.suppress(Exception):
                exporter.shutdown()  # aborts an exporter's retry wait
        self._thread.join(1.0)
        with self._lock:
            for chunk in self._chunks:
                self.dropped_events[chunk.instance] = self.dropped_events.get(chunk.instance, 0) + len(chunk.rows)
            if self._inflight is not None:
                for instance, n in self._inflight.per_instance.items():
                    self.dropped_events[instance] = self.dropped_events.get(instance, 0) + n
            for instance, _ts, samples in self._sample_sets:
                self.dropped_points[instance] = self.dropped_points.get(instance, 0) + len(samples)
            self._chunks.clear()
            self._sample_sets.clear()
            self._inflight = None
            self._queued = 0
            self._abandoned = True
        with contextlib.suppress(RuntimeError):  # the thread, if still stuck, may be changing them
            unsent = self.metrics.collect()
            if unsent is not None:
                with self._lock:
                    for instance, n in unsent.per_instance.items():
                        self.dropped_points[instance] = self.dropped_points.get(instance, 0) + n
        left = self.stats()
        if left["dropped"] or left["errors"]:
            log.warning("otlp %s: closed; %d sent, %d dropped, %d failed exports (last: %s)", self.options.endpoint,
                        left["sent"], left["dropped"], left["errors"], left["last_error"])

    # -- the background thread -----------------------------------------------------------
    def _run(self) -> None:
        next_metrics = self.clock() + self.options.interval
        while True:
            try:
                closing = self._closing.is_set()
                self._ingest()
                now = self.clock()
                progressed = False
                if self._queued and (closing or now >= self._log_due_at()):
                    progressed = self._send_logs()
                    if closing and not progressed:
                        return  # the endpoint is down: close() counts what is left
                metrics_due = max(next_metrics, self._metric_backoff.until)
                if self.metrics.pending() and (closing or now >= metrics_due):
                    next_metrics = now + self.options.interval
                    if not self._send_metrics() and closing:
                        return
                if closing and self._nothing_left():
                    return
                if progressed:
                    continue
                due = min(self._log_due_at(), metrics_due if self.metrics.pending() else float("inf"))
                # new sample sets do not wake the thread: it looks at least once an interval
                self._wake.wait(min(max(due - self.clock(), 0.005), self.options.interval))
                self._wake.clear()
            except Exception as exc:  # a bug here must not end the thread silently
                self._note_error(f"export thread: {type(exc).__name__}: {exc}")
                log.exception("otlp export thread")
                if self._closing.is_set():
                    return
                time.sleep(min(self.options.interval, 1.0))

    def _nothing_left(self) -> bool:
        with self._lock:
            return not self._queued and not self._sample_sets and not self.metrics.pending()

    def _log_due_at(self) -> float:
        """When the thread should next try to send events (inf: nothing queued)."""
        with self._lock:
            if not self._queued:
                return float("inf")
            full = self._queued >= self.options.batch or self._inflight is not None or not self._chunks
            oldest = self._chunks[0].arrived if self._chunks else 0.0
        return max(self._log_backoff.until, 0.0 if full else oldest + self.options.interval)

    def _ingest(self) -> None:
        while True:
            with self._lock:
                if not self._sample_sets:
                    return
                instance, ts, samples = self._sample_sets.popleft()
            dropped = self.metrics.ingest(instance, ts, samples)
            if dropped:
                with self._lock:
                    self.dropped_points[instance] = self.dropped_points.get(instance, 0) + dropped

    # logs
    def _take_batch(self) -> _LogBatch:
        """Up to ``batch`` rows off the queue, as log records; the batch is the in-flight one
        (what close() counts as dropped if it is never sent) from the moment it leaves the queue."""
        taken: list[_Chunk] = []
        per_instance: dict[str, int] = {}
        with self._lock:
            want = self.options.batch
            while want and self._chunks:
                chunk = self._chunks[0]
                if len(chunk.rows) <= want:
                    taken.append(self._chunks.popleft())
                else:
                    taken.append(_Chunk(chunk.instance, chunk.tracer, chunk.columns, chunk.rows[:want], chunk.received,
                                        chunk.arrived))
                    chunk.rows = chunk.rows[want:]
                want -= len(taken[-1].rows)
                per_instance[chunk.instance] = per_instance.get(chunk.instance, 0) + len(taken[-1].rows)
            batch = self._inflight = _LogBatch([], sum(len(c.rows) for c in taken), per_instance)
        for chunk in taken:
            records, bad = self._records(chunk)
            batch.records += records
            if bad:
                with self._lock:
                    per_instance[chunk.instance] -= bad
                    self.dropped_events[chunk.instance] = self.dropped_events.get(chunk.instance, 0) + bad
                self._note_error(f"{chunk.instance}: {bad} rows are not rows of their {len(chunk.columns)} columns")
        return batch

    def _records(self, chunk: _Chunk) -> tuple[list[ReadableLogRecord], int]:
        """The chunk's rows as log records, and how many rows were not rows of its columns."""
        key = (chunk.tracer, tuple(chunk.columns))
        mapper = self._mappers.get(key)
        if mapper is None:
            mapper = self._mappers[key] = EventMapper(chunk.tracer, chunk.columns)
        resource = self._resource_for(chunk.instance, chunk.tracer)
        out = []
        for row in chunk.rows:
            if not isinstance(row, (list, tuple)) or len(row) != len(mapper.columns):
                continue
            ts = row[mapper.ts_index] if mapper.ts_index is not None else None
            try:
                record = LogRecord(timestamp=ts if isinstance(ts, int) and ts > 0 else chunk.received,
                                   observed_timestamp=chunk.received, body=mapper.body(row),
                                   attributes=mapper.attributes(row), event_name=f"eunomia.{chunk.tracer}")
            except Exception:  # a value no attribute can hold: counted with the bad rows
                continue
            out.append(ReadableLogRecord(log_record=record, resource=resource, instrumentation_scope=self.scope))
        return out, len(chunk.rows) - len(out)

    def _send_logs(self) -> bool:
        """One batch; True when it left the queue (sent, or refused for good)."""
        batch = self._inflight or self._take_batch()
        if not batch.records:  # every row was bad (and counted)
            with self._lock:
                if not self._abandoned:
                    self._inflight = None
                    self._queued -= batch.rows
            return True
        ok, retry = self._export(self.log_session, lambda: self.log_exporter.export(batch.records) is
                                 LogRecordExportResult.SUCCESS, self._log_backoff, f"{len(batch.records)} log records")
        if retry:
            return False
        with self._lock:
            if self._abandoned:
                return False
            self._inflight = None
            self._queued -= batch.rows
            if ok:
                self.sent_events += len(batch.records)
            else:
                for instance, n in batch.per_instance.items():
                    self.dropped_events[instance] = self.dropped_events.get(instance, 0) + n
        return True

    # metrics
    def _send_metrics(self) -> bool:
        batch = self.metrics.collect()
        if batch is None:
            return True
        ok, retry = self._export(self.metric_session, lambda: self.metric_exporter.export(batch.data) is
                                 MetricExportResult.SUCCESS, self._metric_backoff, f"{batch.points} metric points")
        if retry:
            return False
        self.metrics.done(batch)
        with self._lock:
            if self._abandoned:
                return False
            if ok:
                self.sent_points += batch.points
            else:
                for instance, n in batch.per_instance.items():
                    self.dropped_points[instance] = self.dropped_points.get(instance, 0) + n
        return True

    def _export(self, session: RecordingSession, send: Callable[[], bool], backoff: _Backoff,
                what: str) -> tuple[bool, bool]:
        """(sent, retry later) for one export attempt."""
        session.reset()
        try:
            ok = send()
        except Exception as exc:  # an exporter bug: the same data would fail again
            self._note_error(f"{what}: {type(exc).__name__}: {exc}")
            return False, False
        if ok:
            if backoff.failing:
                log.info("otlp %s: exporting again", self.options.endpoint)
            backoff.succeeded()
            return True, False
        retry = session.answered is None or session.answered in RETRYABLE_STATUS
        reason = session.error or (f"HTTP {session.answered}" if session.answered else "the exporter failed")
        if not retry:
            reason += " (refused for good: dropped)"
        elif session.answered is None and session.error is None:
            retry = False  # failed before any request: it would fail again
            reason = (f"{what} not sent: shutting down" if self._closing.is_set()
                      else f"{what} could not be encoded or are too large (dropped)")
        self._warn(backoff, f"otlp: cannot export {what}: {reason}{'; retrying with backoff' if retry else ''}")
        self._note_error(reason)
        if retry:
            backoff.failed(self.clock())
        return False, retry

    # helpers
    def _warn(self, backoff: _Backoff, message: str) -> None:
        """Once per outage, and a refusal at most once a minute unless it changes."""
        now = self.clock()
        if backoff.failing or (message == backoff.warned and now - backoff.warned_at < 60):
            return
        backoff.warned, backoff.warned_at = message, now
        log.warning("%s", message)

    def _resource_for(self, instance: str, tracer: str) -> Resource:
        key = (instance, tracer)
        resource = self._resources.get(key)
        if resource is None:
            resource = self._resources[key] = self.resource.merge(
                Resource({"eunomia.instance": instance, "eunomia.tracer": tracer}))
        return resource

    def _note_error(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = message

