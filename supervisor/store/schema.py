"""Schema migrations, applied in order by the writer when it opens the database."""

from __future__ import annotations

import time

import sqlite_utils

#: (version, statements). Append only; never edit a released migration.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            ts INTEGER NOT NULL,          -- ns since the epoch
            instance TEXT NOT NULL,
            tracer TEXT NOT NULL,
            pid INTEGER,
            comm TEXT,
            uid INTEGER,
            cgroup_id INTEGER,
            data TEXT NOT NULL            -- JSON object: every other field of the event
        )""",
        "CREATE INDEX events_ts ON events (ts)",
        "CREATE INDEX events_tracer_ts ON events (tracer, ts)",
        """CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            labels TEXT NOT NULL,         -- JSON object, keys sorted
            UNIQUE (name, labels)
        )""",
        """CREATE TABLE samples (
            series_id INTEGER NOT NULL REFERENCES series (id),
            ts INTEGER NOT NULL,          -- ns since the epoch
            value REAL NOT NULL,
            PRIMARY KEY (series_id, ts)
        ) WITHOUT ROWID""",
        "CREATE INDEX samples_ts ON samples (ts)",
    ]),
    # The ts index cost 40% of insert throughput. Age retention uses (tracer, ts) per tracer,
    # and "newest first" follows the rowid, which grows with arrival time.
    (2, ["DROP INDEX events_ts"]),
]


def migrate(db: sqlite_utils.Database) -> int:
    """Bring ``db`` to the newest schema; return its version."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER)")
    done = {row[0] for row in db.execute("SELECT version FROM schema_migrations").fetchall()}
    newest = max(done, default=0)
    known = max(v for v, _ in MIGRATIONS)
    if newest > known:
        raise RuntimeError(f"database schema version {newest} is newer than this agent knows ({known})")
    for version, statements in MIGRATIONS:
        if version in done:
            continue
        with db.conn:
            for sql in statements:
                db.execute(sql)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, time.time_ns()])
        newest = version
    return newest
