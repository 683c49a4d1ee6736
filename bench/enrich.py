#!/usr/bin/env python3
"""Cost of the container columns: ns per event row for the enricher, on batches like the workers send.

Pure CPU, no root: a registry with a fake cgroup index (the real lookups happen once per
distinct cgroup id, which is what this measures around), batches of ``--batch`` rows over
``--cgroups`` distinct cgroup ids, half of them containers named by a source.

    .venv/bin/python bench/enrich.py
    .venv/bin/python bench/enrich.py --batch 4096 --cgroups 500 --rows 2000000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from supervisor.containers.enrich import Enricher
from supervisor.containers.info import EVENT_COLUMNS, ContainerInfo, Namespaces
from supervisor.containers.registry import ContainerRegistry
from supervisor.store.writer import StoreWriter, _Events

COLS = ["ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm", "filename", "ret"]


class Index:
    root = Path("/nonexistent")

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths

    def path(self, cgroup_id: int) -> str | None:
        return self.paths.get(cgroup_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="rows per frame (the workers' batch_max)")
    parser.add_argument("--cgroups", type=int, default=200, help="distinct cgroup ids in the stream")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    paths = {i + 2: (f"/docker/{i:064x}" if i % 2 else f"/system.slice/svc-{i}.service") for i in range(args.cgroups)}
    registry = ContainerRegistry(Index(paths), namespaces_of_pid=lambda pid: Namespaces())  # type: ignore[arg-type]
    for i in range(1, args.cgroups, 2):
        registry.upsert(ContainerInfo(f"{i:064x}", "docker", name=f"c{i}", image="busybox", labels={}))
    enricher = Enricher(registry)
    ids = list(paths)

    def batch(start: int) -> list[list]:
        return [[0, ids[(start + k) % len(ids)], 100 + k, 100 + k, 0, 0, "cat", "/etc/hosts", 3]
                for k in range(args.batch)]

    frames = [batch(n * args.batch) for n in range(max(1, args.rows // args.batch))]
    copies = [[list(r) for r in f] for f in frames]  # the same work without the enricher, for the baseline
    started = time.perf_counter()
    for rows in frames:
        enricher.events(list(COLS), rows)
    took = time.perf_counter() - started
    rows = len(frames) * args.batch
    started = time.perf_counter()
    for rows_copy in copies:
        for r in rows_copy:
            r.extend(())
    base = time.perf_counter() - started
    print(f"rows: {rows}  batch: {args.batch}  distinct cgroups: {args.cgroups}")
    print(f"enrich: {took * 1e9 / rows:.0f} ns/row ({rows / took / 1e6:.2f} M rows/s on one core); "
          f"a bare loop over the rows: {base * 1e9 / rows:.0f} ns/row")
    print(f"registry lookups: {registry.stats.resolves} (cgroup misses {registry.stats.cgroup_misses})")
    print(f"at 100k events/s: {took / rows * 1e5 * 100:.1f}% of one core")
    # What the wider rows cost the store writer (its thread turns each row into a JSON `data` column).
    plain = [list(r) for r in copies[0]]
    wide = frames[0]
    for label, cols, sample in (("without", COLS, plain), ("with", [*COLS, *EVENT_COLUMNS], wide)):
        started = time.perf_counter()
        for _ in range(20):
            StoreWriter._event_rows(_Events("bench", "bench", cols, sample))
        print(f"store writer, rows {label} the container columns: "
              f"{(time.perf_counter() - started) * 1e9 / (20 * len(sample)):.0f} ns/row")


if __name__ == "__main__":
    main()
