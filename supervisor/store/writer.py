"""The single writer: a thread that owns the write connection and commits in batches.

Producers (the supervisor's event loop) never wait for the disk: ``submit_*`` puts a
batch on a bounded queue or, when it is full, drops it and counts the loss per
instance. The writer drains everything queued into one transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from supervisor.store.schema import migrate

log = logging.getLogger(__name__)

PROMOTED = ("ts", "pid", "comm", "uid", "cgroup_id")  # real columns; the rest goes to `data`


@dataclass(frozen=True, slots=True)
class Retention:
    max_events: int = 1_000_000
    events_max_age_s: float = 7 * 86400
    samples_max_age_s: float = 7 * 86400
    prune_interval_s: float = 10.0


@dataclass(slots=True)
class _Events:
    instance: str
    tracer: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(slots=True)
class _Samples:
    ts: int
    samples: list[tuple[str, dict[str, str], float]]  # (name, labels, value)


@dataclass(slots=True)
class WriterStats:
    events_written: int = 0
    samples_written: int = 0
    transactions: int = 0
    errors: int = 0
    last_error: str = ""
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class StoreWriter:
    def __init__(self, path: Path, retention: Retention | None = None, queue_batches: int = 2000,
                 max_queued_rows: int = 200_000) -> None:
        self.path = Path(path)
        self.retention = retention or Retention()
        self._queue: queue.Queue[_Events | _Samples | None] = queue.Queue(maxsize=queue_batches)
        # The queue is bounded in rows too, so that the supervisor's memory stays bounded
        # when the disk falls behind: a backlog beyond this is dropped and counted.
        self.max_queued_rows = max_queued_rows
        self._queued_rows = 0
        self._queued_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._series: dict[tuple[str, str], int] = {}
        self.stats = WriterStats()
        self._ready = threading.Event()
        self._open_error: BaseException | None = None

    # -- producer side (event loop thread) ------------------------------------------
    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise self._open_error

    def submit_events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> bool:
        return self._put(_Events(instance, tracer, columns, rows), instance, len(rows))

    def submit_samples(self, ts: int, samples: list[tuple[str, dict[str, str], float]],
                       instance: str = "") -> bool:
        return self._put(_Samples(ts, samples), instance, 0)

    def _put(self, item: _Events | _Samples, instance: str, count: int) -> bool:
        with self._queued_lock:
            if self._queued_rows + count > self.max_queued_rows:
                self.stats.dropped[instance] += count
                return False
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.stats.dropped[instance] += count
                return False
            self._queued_rows += count
        return True

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # -- writer thread ---------------------------------------------------------------
    def _open(self) -> sqlite_utils.Database:
        db = sqlite_utils.Database(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        migrate(db)
        for sid, name, labels in db.execute("SELECT id, name, labels FROM series").fetchall():
            self._series[(name, labels)] = sid
        return db

    def _run(self) -> None:
        try:
            db = self._open()
        except BaseException as exc:  # reported to start()'s caller
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        next_prune = time.monotonic() + self.retention.prune_interval_s
        stopping = False
        while not stopping:
            items = self._drain(timeout=0.5)
            stopping = any(item is None for item in items)
            batch = [item for item in items if item is not None]
            if batch:
                self._write(db, batch)
                done = sum(len(item.rows) for item in batch if isinstance(item, _Events))
                with self._queued_lock:
                    self._queued_rows -= done
            if time.monotonic() >= next_prune or stopping:
                self._prune(db)
                next_prune = time.monotonic() + self.retention.prune_interval_s
        db.conn.close()

    def _drain(self, timeout: float, most: int = 512) -> list[_Events | _Samples | None]:
        """Wait for one item, then take whatever else is already queued."""
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(items) < most:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _write(self, db: sqlite_utils.Database, batch: list[_Events | _Samples]) -> None:
        """One transaction for the whole batch; if it fails, one per item, so a bad item loses only itself."""
        try:
            self._commit(db, batch)
        except Exception:
            self._series.clear()  # ids inserted by the rolled-back transaction do not exist
            for item in batch:
                try:
                    self._commit(db, [item])
                except Exception as exc:  # disk full, locked too long, a row that cannot be stored
                    self._series.clear()
                    self.stats.errors += 1
                    owner = item.instance if isinstance(item, _Events) else "samples"
                    self.stats.last_error = f"{owner}: {exc.__class__.__name__}: {exc}"
                    if isinstance(item, _Events):
                        self.stats.dropped[item.instance] += len(item.rows)
                    log.error("store write failed: %s", self.stats.last_error)

    def _commit(self, db: sqlite_utils.Database, batch: list[_Events | _Samples]) -> None:
        event_rows: list[tuple[Any, ...]] = []
        sample_rows: list[tuple[int, int, float]] = []
        with db.conn:
            for item in batch:
                if isinstance(item, _Events):
                    event_rows.extend(self._event_rows(item))
                elif item.samples:
                    sample_rows.extend((self._series_id(db, name, labels), item.ts, float(value))
                                       for name, labels, value in item.samples)
            db.conn.executemany(
                "INSERT INTO events (ts, instance, tracer, pid, comm, uid, cgroup_id, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", event_rows)
            db.conn.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", sample_rows)
        self.stats.events_written += len(event_rows)
        self.stats.samples_written += len(sample_rows)
        self.stats.transactions += 1

    @staticmethod
    def _event_rows(item: _Events) -> list[tuple[Any, ...]]:
        cols = item.columns
        index = {c: i for i, c in enumerate(cols)}
        promoted = [index.get(c) for c in PROMOTED]
        rest = [(c, i) for i, c in enumerate(cols) if c not in PROMOTED]
        out = []
        for row in item.rows:
            ts, pid, comm, uid, cgroup = (row[i] if i is not None else None for i in promoted)
            data = orjson.dumps({c: row[i] for c, i in rest if row[i] is not None}).decode()
            out.append((ts, item.instance, item.tracer, pid, comm, uid, cgroup, data))
        return out

    def _series_id(self, db: sqlite_utils.Database, name: str, labels: dict[str, str]) -> int:
        key = (name, orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode())
        sid = self._series.get(key)
        if sid is None:
            db.conn.execute("INSERT OR IGNORE INTO series (name, labels) VALUES (?, ?)", key)
            sid = db.conn.execute("SELECT id FROM series WHERE name = ? AND labels = ?", key).fetchone()[0]
            self._series[key] = sid
        return sid

    def _prune(self, db: sqlite_utils.Database) -> None:
        r = self.retention
        now = time.time_ns()
        try:
            with db.conn:
                cutoff = now - int(r.events_max_age_s * 1e9)
                tracers = [row[0] for row in db.conn.execute("SELECT DISTINCT tracer FROM events")]
                for tracer in tracers:  # each DELETE walks the (tracer, ts) index
                    db.conn.execute("DELETE FROM events WHERE tracer = ? AND ts < ?", [tracer, cutoff])
                db.conn.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", [r.max_events])
                db.conn.execute("DELETE FROM samples WHERE ts < ?", [now - int(r.samples_max_age_s * 1e9)])
        except Exception as exc:
            self.stats.errors += 1
            self.stats.last_error = f"prune: {exc.__class__.__name__}: {exc}"
