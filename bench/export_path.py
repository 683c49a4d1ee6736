#!/usr/bin/env python3
"""What the export path costs: events/s through the stdout and file handlers, the time the
supervisor's loop spends handing them a batch, and the prometheus handler's update and
scrape costs. In process, no kernel needed.

    .venv/bin/python bench/export_path.py [--events 1000000] [--batch 512] [--series 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import generate_latest  # noqa: E402

from supervisor.export import Exports  # noqa: E402
from supervisor.export.buffered import Buffered, BufferOptions  # noqa: E402
from supervisor.export.collector import agent_registry  # noqa: E402
from supervisor.export.file import FileHandler, FileOptions  # noqa: E402
from supervisor.export.stdout import StdoutHandler, StdoutOptions  # noqa: E402
from supervisor.sinks import flatten_samples  # noqa: E402
from supervisor.states import State  # noqa: E402
from workers.catalog import Catalog, default_search_path  # noqa: E402

COLUMNS = ["ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm", "latency_ns", "family", "sport", "dport", "result",
           "saddr", "daddr"]


def _rows(n: int) -> list[list[Any]]:
    return [[1_795_342_450_365_284_204 + i, 4321, 1000 + i % 50, 1000 + i % 50, 0, 0, "curl", 81234, 4, 40000 + i % 999,
             443, "established", "10.0.0.2", "93.184.216.34"] for i in range(n)]


def through(name: str, handler: Any, events: int, batch: int) -> None:
    wrapped = Buffered(handler, name, BufferOptions(buffer=10_000_000))
    rows = _rows(batch)
    batches = events // batch
    start = time.perf_counter()
    on_loop = 0.0
    for _ in range(batches):
        t = time.perf_counter()
        wrapped.events("bench-1", "tcpconnect", COLUMNS, rows)
        on_loop += time.perf_counter() - t
    while wrapped.stats.queued:
        time.sleep(0.001)
    elapsed = time.perf_counter() - start
    total = batches * batch
    stats = wrapped.stats
    wrapped.close()
    wrapped.join(10)
    print(f"{name:<8} {total / elapsed:>12,.0f} events/s   loop: {on_loop / batches * 1e6:7.1f} µs per batch of "
          f"{batch} ({on_loop / total * 1e9:5.0f} ns/event)   sent {stats.sent:,} dropped {stats.dropped}")


def prometheus(series: int) -> None:
    tracer = Catalog.discover(default_search_path()).get("tcpconnect")
    export = Exports().open("bench-1", tracer, [{"name": "prometheus"}])
    raw = [{"name": "tcp_connects_total", "type": "counter", "labels": {"family": "4", "dport": str(p)}, "value": p}
           for p in range(series)]
    raw.append({"name": "tcp_connect_latency_seconds", "type": "histogram", "labels": {},
                "buckets": [[2.0**s * 1e-9, s] for s in range(30)], "count": 29, "sum": 1.0})
    samples = flatten_samples(raw, {"instance": "bench-1", "tracer": "tcpconnect"})
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        export.samples("bench-1", 1, samples)
    update = (time.perf_counter() - start) / rounds
    watcher = SimpleNamespace(id="bench-1", tracer=tracer, state=State.RUNNING, export=export)
    sup = SimpleNamespace(watchers={"bench-1": watcher}, stats=SimpleNamespace(bad_frames=0, unknown_instance_frames=0),
                          describe=lambda w: {"events": 0, "restarts": 0, "drops": {}, "worker": {},
                                              "export_handlers": w.export.describe()})
    registry = agent_registry(sup)
    start = time.perf_counter()
    for _ in range(rounds):
        text = generate_latest(registry)
    scrape = (time.perf_counter() - start) / rounds
    print(f"prometheus {series:,} series: update {update * 1e3:6.1f} ms per metrics frame (on the loop), "
          f"scrape {scrape * 1e3:6.1f} ms ({len(text) / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--series", type=int, default=10_000)
    opts = parser.parse_args()
    with open("/dev/null", "wb") as devnull:
        through("stdout", StdoutHandler(StdoutOptions(), stream=devnull), opts.events, opts.batch)
    with tempfile.TemporaryDirectory(prefix="eunomia-bench-") as tmp:
        through("file", FileHandler(FileOptions(path=f"{tmp}/e.jsonl", max_bytes=64 << 20, keep=2)), opts.events,
                opts.batch)
    prometheus(opts.series)


if __name__ == "__main__":
    main()
