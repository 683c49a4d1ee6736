"""The SQLite store: migrations, batched writes, retention, counted drops."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from supervisor.store import Retention, StoreReader, StoreWriter
from supervisor.store.reader import EventQuery
from supervisor.store.schema import MIGRATIONS

COLS = ["ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm", "path", "fd", "note"]


def _rows(n: int, start_ts: int, pid: int = 10) -> list[list]:
    return [[start_ts + i, 1, pid, pid, 0, 0, "cat", f"/p/{i}", i, None] for i in range(n)]


def _flush(writer: StoreWriter) -> None:
    writer.close()


def test_events_round_trip_with_promoted_columns(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s.db")
    writer.start()
    now = time.time_ns()
    assert writer.submit_events("opensnoop-1", "opensnoop", COLS, _rows(3, now))
    _flush(writer)
    events = StoreReader(tmp_path / "s.db").events(EventQuery(tracer="opensnoop", limit=10))
    assert [e["path"] for e in events] == ["/p/2", "/p/1", "/p/0"]  # newest first
    assert events[0] | {} == {"ts": now + 2, "tracer": "opensnoop", "instance": "opensnoop-1", "pid": 10,
                              "comm": "cat", "uid": 0, "cgroup_id": 1, "tid": 10, "gid": 0, "path": "/p/2", "fd": 2}
    assert "note" not in events[0]  # None fields are not stored
    assert writer.stats.events_written == 3 and writer.stats.transactions >= 1


def test_migrations_are_idempotent_and_versioned(tmp_path: Path) -> None:
    for _ in range(2):
        writer = StoreWriter(tmp_path / "s.db")
        writer.start()
        writer.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert versions == [v for v, _ in MIGRATIONS]
    assert mode == "wal"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s.db")
    writer.start()
    writer.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    with pytest.raises(RuntimeError, match="schema version 999 is newer"):
        StoreWriter(tmp_path / "s.db").start()


def test_retention_by_count_and_age(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s.db", Retention(max_events=50, events_max_age_s=3600, prune_interval_s=3600))
    writer.start()
    now = time.time_ns()
    writer.submit_events("i", "t", COLS, _rows(10, now - 7200 * 10**9))  # two hours old: expired
    writer.submit_events("i", "t", COLS, _rows(120, now))
    writer.close()  # prunes on the way out
    events = StoreReader(tmp_path / "s.db").events(EventQuery(limit=1000))
    assert len(events) == 50
    assert {e["path"] for e in events} == {f"/p/{i}" for i in range(70, 120)}


def test_samples_latest_per_series(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s.db")
    writer.start()
    t0 = time.time_ns()
    writer.submit_samples(t0, [("m_total", {"a": "1"}, 1.0), ("m_total", {"a": "2"}, 5.0)])
    writer.submit_samples(t0 + 100, [("m_total", {"a": "1"}, 3.0)])
    writer.close()
    reader = StoreReader(tmp_path / "s.db")
    latest = reader.samples("m_total", latest=True)
    assert {(tuple(s["labels"].items()), s["ts"], s["value"]) for s in latest} == {
        ((("a", "1"),), t0 + 100, 3.0), ((("a", "2"),), t0, 5.0)}
    assert len(reader.samples("m_total")) == 3
    writer2 = StoreWriter(tmp_path / "s.db")
    writer2.start()
    writer2.submit_samples(t0, [("m_total", {"instance": "x-1"}, 7.0), ("m_total", {"instance": "x-2"}, 8.0)])
    writer2.close()
    assert [s["value"] for s in reader.samples("m_total", latest=True, instance="x-2")] == [8.0]


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s.db", queue_batches=2)  # not started: nothing drains the queue
    assert writer.submit_events("a", "t", COLS, _rows(5, 0))
    assert writer.submit_events("a", "t", COLS, _rows(5, 0))
    started = time.monotonic()
    assert not writer.submit_events("a", "t", COLS, _rows(7, 0))
    assert not writer.submit_events("b", "t", COLS, _rows(3, 0))
    assert time.monotonic() - started < 1.0
    assert dict(writer.stats.dropped) == {"a": 7, "b": 3}


def test_the_queue_is_bounded_in_rows(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s.db", max_queued_rows=10)  # not started
    assert writer.submit_events("a", "t", COLS, _rows(6, 0))
    assert not writer.submit_events("a", "t", COLS, _rows(6, 0))  # 12 > 10
    assert writer.submit_events("a", "t", COLS, _rows(4, 0))
    assert writer.queued_rows == 10 and dict(writer.stats.dropped) == {"a": 6}


def test_an_unstorable_batch_loses_only_itself(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "s.db")
    writer.start()
    now = time.time_ns()
    writer.submit_events("bad", "t", ["ts", "pid"], [[now, [1, 2]], [now, 3]])  # a list cannot be a pid
    writer.submit_events("good", "t", COLS, _rows(2, now))
    writer.close()
    assert writer.stats.errors == 1 and "bad" in writer.stats.last_error
    assert dict(writer.stats.dropped) == {"bad": 2}
    events = StoreReader(tmp_path / "s.db").events(EventQuery(limit=10))
    assert sorted(e["instance"] for e in events) == ["good", "good"]
