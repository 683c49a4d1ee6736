"""Read-only queries on the store, each on its own connection (safe from any thread)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class EventQuery:
    tracer: str | None = None
    instance: str | None = None
    pid: int | None = None
    comm: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = 100


class StoreReader:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        return conn

    def events(self, q: EventQuery) -> list[dict[str, Any]]:
        """Newest first (in arrival order, which follows time within ~50 ms), at most ``q.limit``."""
        where, params = [], []
        for column, value in (("tracer", q.tracer), ("instance", q.instance), ("pid", q.pid), ("comm", q.comm)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if q.since_ns is not None:
            where.append("ts >= ?")
            params.append(q.since_ns)
        if q.until_ns is not None:
            where.append("ts < ?")
            params.append(q.until_ns)
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(q.limit)
        with self._connect() as conn:
            rows = conn.execute(sql, params).fetchall()
        out = []
        for row in rows:
            event = {"ts": row["ts"], "tracer": row["tracer"], "instance": row["instance"], "pid": row["pid"],
                     "comm": row["comm"], "uid": row["uid"], "cgroup_id": row["cgroup_id"]}
            event.update(orjson.loads(row["data"]))
            out.append(event)
        return out

    def samples(self, name: str | None = None, since_ns: int | None = None, limit: int = 1000,
                latest: bool = False, instance: str | None = None) -> list[dict[str, Any]]:
        """Samples newest first; with ``latest``, only the newest sample of each series."""
        where, params = [], []
        if name is not None:
            where.append("series.name = ?")
            params.append(name)
        if instance is not None:
            where.append("json_extract(series.labels, '$.instance') = ?")
            params.append(instance)
        if since_ns is not None:
            where.append("samples.ts >= ?")
            params.append(since_ns)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        if latest:
            sql = ("SELECT series.name, series.labels, s.ts, s.value FROM series"
                   " JOIN samples s ON s.series_id = series.id"
                   " AND s.ts = (SELECT MAX(ts) FROM samples WHERE series_id = series.id)"
                   + cond.replace("samples.ts", "s.ts") + " ORDER BY series.name, series.labels LIMIT ?")
        else:
            sql = ("SELECT series.name, series.labels, samples.ts, samples.value FROM samples"
                   " JOIN series ON series.id = samples.series_id" + cond + " ORDER BY samples.ts DESC LIMIT ?")
        params.append(limit)
        with self._connect() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [{"name": r[0], "labels": orjson.loads(r[1]), "ts": r[2], "value": r[3]} for r in rows]

    def counts(self) -> dict[str, int]:
        with self._connect() as conn:
            events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            samples = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        return {"events": events, "samples": samples}
