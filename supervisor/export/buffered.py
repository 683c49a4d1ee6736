"""The non-blocking wrapper: a bounded queue in front of a handler, drained by a thread of its own.

The supervisor's loop only appends to the queue (or, when it is full, counts the batch as
dropped): a slow or dead destination never stalls the tracer or the other handlers. The
thread delivers batches in order; a delivery that raises is counted and retried, with the
same batch, after an exponential backoff, so nothing within the bound is lost while the
destination is down and everything beyond it is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from supervisor.backoff import BackoffPolicy
from supervisor.export.args import HandlerOptions
from supervisor.export.base import Handler, HandlerStats
from supervisor.sinks import Sample

log = logging.getLogger("eunomia.export")


class BufferOptions(HandlerOptions):
    """Options every buffered handler accepts besides its own."""

    buffer: int = Field(100_000, ge=1, le=10_000_000, description="records (events + samples) held while the "
                        "destination is slow or down; beyond this, new batches are dropped and counted")
    retry_max: float = Field(30.0, gt=0, le=3600, description="longest wait between retries, seconds")


BUFFER_OPTION_NAMES = tuple(BufferOptions.model_fields)


@dataclass(slots=True)
class _Batch:
    instance: str
    size: int
    tracer: str = ""
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    ts: int = 0
    samples: list[Sample] | None = None


class Buffered:
    """Wraps ``inner`` (any :class:`Handler`) so that its methods run on a background thread."""

    def __init__(self, inner: Handler, name: str, options: BufferOptions | None = None,
                 retry_initial: float = 0.2, drain_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        options = options or BufferOptions()
        self.inner = inner
        self.name = name
        self.max_records = options.buffer
        self.retry = BackoffPolicy(initial=min(retry_initial, options.retry_max), maximum=options.retry_max,
                                   jitter=0.1)
        self.drain_timeout = drain_timeout
        self._clock = clock
        self._batches: deque[_Batch] = deque()
        self._queued = 0
        self._cv = threading.Condition()
        self._closing_at: float | None = None
        self._stats = HandlerStats()
        # a handler configured to ignore samples (or events) says so: they then take no room in the queue
        self._takes_events = bool(getattr(inner, "takes_events", True))
        self._takes_samples = bool(getattr(inner, "takes_samples", True))
        self._thread = threading.Thread(target=self._run, name=f"export-{name}", daemon=True)
        self._thread.start()

    # -- producer side (the supervisor's loop) ----------------------------------------
    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        if rows and self._takes_events:
            self._put(_Batch(instance, len(rows), tracer=tracer, columns=columns, rows=rows))

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None:
        if samples and self._takes_samples:
            self._put(_Batch(instance, len(samples), ts=ts, samples=samples))

    def _put(self, batch: _Batch) -> None:
        """Queue the batch, or as many of its events as fit; a metrics snapshot goes whole or not at all."""
        with self._cv:
            room = 0 if self._closing_at is not None else self.max_records - self._queued
            if batch.size > room:
                if batch.rows is None or room <= 0:
                    self._count_dropped(batch)
                    return
                self._stats.dropped += batch.size - room
                batch.rows, batch.size = batch.rows[:room], room
            self._batches.append(batch)
            self._queued += batch.size
            self._cv.notify()

    def dropped(self, instance: str) -> int:
        return self._stats.dropped

    @property
    def stats(self) -> HandlerStats:
        inner = self.inner.stats
        with self._cv:
            return HandlerStats(sent=self._stats.sent, dropped=self._stats.dropped,
                                dropped_samples=self._stats.dropped_samples, errors=self._stats.errors,
                                last_error=self._stats.last_error, queued=self._queued, detail=dict(inner.detail))

    def close(self) -> None:
        """Stop taking batches; the thread keeps delivering what is queued for up to
        ``drain_timeout`` seconds, counts the rest as dropped, then closes the handler."""
        with self._cv:
            if self._closing_at is None:
                self._closing_at = self._clock()
            self._cv.notify()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- delivery thread --------------------------------------------------------------
    def _count_dropped(self, batch: _Batch) -> None:
        if batch.rows is not None:
            self._stats.dropped += batch.size
        else:
            self._stats.dropped_samples += batch.size

    def _deliver(self, batch: _Batch) -> None:
        if batch.rows is not None:
            assert batch.columns is not None
            self.inner.events(batch.instance, batch.tracer, batch.columns, batch.rows)
        else:
            assert batch.samples is not None
            self.inner.samples(batch.instance, batch.ts, batch.samples)

    def _give_up(self) -> bool:
        return self._closing_at is not None and self._clock() - self._closing_at >= self.drain_timeout

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._cv:
                while not self._batches and self._closing_at is None:
                    self._cv.wait()
                if not self._batches or self._give_up():
                    while self._batches:
                        self._count_dropped(self._batches.popleft())
                    self._queued = 0
                    break
                batch = self._batches[0]
            try:
                self._deliver(batch)
            except Exception as exc:  # the destination failed: count it, wait, retry the same batch
                attempt += 1
                message = f"{exc.__class__.__name__}: {exc}"[:500]
                with self._cv:
                    self._stats.errors += 1
                    self._stats.last_error = message
                    if attempt == 1:
                        log.warning("export %s: %s; retrying", self.name, message)
                    delay = self.retry.delay(attempt)
                    if self._closing_at is not None:
                        delay = min(delay, max(0.0, self._closing_at + self.drain_timeout - self._clock()))
                    self._cv.wait(delay)
                continue
            attempt = 0
            with self._cv:
                self._batches.popleft()
                self._queued -= batch.size
                self._stats.sent += batch.size
        try:
            self.inner.close()
        except Exception as exc:
            with self._cv:
                self._stats.errors += 1
                self._stats.last_error = f"close: {exc.__class__.__name__}: {exc}"[:500]
