#!/usr/bin/env python3
"""What the scheduler tracers cost per context switch: Eunomia's runqlat and cpudist next
to bcc's runqlat-bpfcc and cpudist-bpfcc, measured in one run.

The workload is two processes passing a byte back and forth over two pipes (ROUNDTRIPS
round trips: every one is two wakeups and at least two switches). Each tool traces the
whole host, with BPF run-time statistics on (bpf(BPF_ENABLE_STATS)) while the workload
runs; the figure is the kernel's own: nanoseconds per program run (run_time_ns / run_cnt
of the tool's programs), and the round trip's time the workload sees. Rounds are
interleaved (baseline, eunomia, bcc, ...) and medians are reported. A bcc tool that cannot
load here (cpudist-bpfcc needs a kprobe on finish_task_switch) is reported as such.
Needs root, gcc and bpfcc-tools (`make bench-deps`).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from syscount_overhead import PY, REPO, StatsSwitch, _stop, _tree_run_stats, _wait_for_line  # noqa: E402

PINGPONG_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    int there[2], back[2];
    char c = 'x';
    if (pipe(there) || pipe(back))
        return 1;
    if (fork() == 0) {
        for (long i = 0; i < n; i++)
            if (read(there[0], &c, 1) != 1 || write(back[1], &c, 1) != 1)
                _exit(1);
        _exit(0);
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        if (write(there[1], &c, 1) != 1 || read(back[0], &c, 1) != 1)
            return 1;
    clock_gettime(CLOCK_MONOTONIC, &b);
    wait(NULL);
    printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""

Tool = Callable[[], subprocess.Popen[str]]


def eunomia(tracer: str) -> Tool:
    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([str(PY), "-m", "supervisor.cli.main", "trace", tracer, "--interval", "3600"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for_line(proc, "Hit Ctrl-C to end")
        return proc
    return start


def bcc(tool: str) -> Tool:
    def start() -> subprocess.Popen[str]:
        exe = shutil.which(f"{tool}-bpfcc") or f"/usr/sbin/{tool}-bpfcc"
        proc = subprocess.Popen([exe, "3600", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for_line(proc, "Tracing")
        return proc
    return start


def run_workload(binary: Path, roundtrips: int) -> float:
    return float(subprocess.run([str(binary), str(roundtrips)], check=True, capture_output=True, text=True).stdout)


def measure(tool: Tool, binary: Path, roundtrips: int, switch: StatsSwitch) -> tuple[float, float]:
    """(ns per program run, ns per round trip) with the tool attached."""
    proc = tool()
    try:
        switch.acquire()
        try:
            before = _tree_run_stats(proc)
            roundtrip = run_workload(binary, roundtrips)
            after = _tree_run_stats(proc)
        finally:
            switch.release()
    finally:
        _stop(proc)
    runs = after[1] - before[1]
    return ((after[0] - before[0]) / runs if runs else math.nan), roundtrip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roundtrips", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp) / "pingpong.c", Path(tmp) / "pingpong"
        source.write_text(PINGPONG_C)
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
        switch = StatsSwitch()
        tools: dict[str, Tool] = {f"{name} {who}": (eunomia(name) if who == "eunomia" else bcc(name))
                                  for name in ("runqlat", "cpudist") for who in ("eunomia", "bcc")}
        per_run: dict[str, list[float]] = {name: [] for name in tools}
        roundtrip: dict[str, list[float]] = {name: [] for name in ["baseline", *tools]}
        unavailable: dict[str, str] = {}
        for r in range(args.rounds):
            roundtrip["baseline"].append(run_workload(binary, args.roundtrips))
            for name, tool in tools.items():
                if name in unavailable:
                    continue
                try:
                    ns, rt = measure(tool, binary, args.roundtrips, switch)
                except RuntimeError as exc:
                    unavailable[name] = str(exc)
                    continue
                per_run[name].append(ns)
                roundtrip[name].append(rt)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {per_run[n][-1]:.1f} ns/run" for n in tools if n not in unavailable), flush=True)
    base = statistics.median(roundtrip["baseline"])
    figures: dict[str, dict[str, float | str]] = {}
    print(f"\nping-pong round trip without a tracer: {base / 1000:.2f} us (median of {args.rounds})")
    for name in tools:
        if name in unavailable:
            print(f"{name:18s} does not run here: {unavailable[name]}")
            figures[name] = {"unavailable": unavailable[name]}
            continue
        ns, rt = statistics.median(per_run[name]), statistics.median(roundtrip[name])
        print(f"{name:18s} {ns:7.1f} ns per program run; round trip {rt / 1000:.2f} us ({(rt - base) / 1000:+.2f})")
        figures[name] = {"ns_per_run": round(ns, 1), "roundtrip_ns": rt, "added_roundtrip_ns": round(rt - base, 1)}
    if args.json:
        args.json.write_text(json.dumps({"baseline_roundtrip_ns": base, "tools": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
