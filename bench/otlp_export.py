#!/usr/bin/env python3
"""The otlp handler's cost: what ``events()`` costs the supervisor's loop per call, and how
many events per second the export thread sends to a loopback OTLP/HTTP receiver (the tests'
receiver, which also decodes every request: the figure is a floor).

    .venv/bin/python bench/otlp_export.py [--events 50000] [--rows-per-call 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor.export.otlp import OtlpHandler  # noqa: E402
from tests.integration.otlp_receiver import OtlpReceiver  # noqa: E402

COLUMNS = ["ts", "pid", "tid", "uid", "gid", "comm", "cgroup_id", "latency_ns", "family", "sport", "dport",
           "result", "saddr", "daddr"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rows-per-call", type=int, default=64)
    args = parser.parse_args()
    receiver = OtlpReceiver()
    handler = OtlpHandler(["--endpoint", receiver.url, "--interval", "0.05", "--batch", "1024",
                           "--queue", str(args.events)])
    now = time.time_ns()
    rows = [[now + i, 1000 + i % 50, 1000 + i % 50, 0, 0, "curl", 1, 1500, 4, 40000 + i % 1000, 443, "established",
             "10.0.0.1", "10.0.0.2"] for i in range(args.rows_per_call)]
    calls = args.events // args.rows_per_call
    begun = time.perf_counter()
    call_time = 0.0
    for _ in range(calls):
        t = time.perf_counter()
        handler.events("tcpconnect-1", "tcpconnect", COLUMNS, rows)
        call_time += time.perf_counter() - t
    total = calls * args.rows_per_call
    while handler.stats()["sent_events"] + handler.stats()["dropped_events"] < total:
        time.sleep(0.01)
    elapsed = time.perf_counter() - begun
    stats = handler.stats()
    handler.close()
    receiver.stop()
    print(f"events():  {call_time / calls * 1e6:.1f} µs per call of {args.rows_per_call} rows "
          f"({call_time / total * 1e9:.0f} ns per row) on the caller's thread")
    print(f"exported:  {stats['sent_events']} events in {elapsed:.2f} s = {stats['sent_events'] / elapsed:,.0f} "
          f"events/s to a loopback receiver; dropped {stats['dropped_events']}, errors {stats['errors']}")


if __name__ == "__main__":
    main()
