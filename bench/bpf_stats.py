#!/usr/bin/env python3
"""What the kernel-time budget of untrusted tracers costs and how well it measures.

1. Overhead of BPF run-time statistics: getppid(2) in a tight loop with no program, with a
   trivial tracepoint program and statistics off, and with statistics on (bpf(BPF_ENABLE_STATS),
   what the agent holds while an untrusted tracer with a budget runs).
2. Accounting: a program that loops LOOPS times per call. The added syscall time the caller
   sees, against the run time the kernel's statistics attribute to the program per run.
3. What the supervisor pays to read a worker's statistics (/proc/PID/fdinfo, once a second).

Needs root and BCC.  .venv/bin/python bench/bpf_stats.py [--calls 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.isolation.bpf_stats import _enable_stats_fd, program_stats  # noqa: E402

TRIVIAL = "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }"
LOOP = """
BPF_ARRAY(scratch, u64, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET)
        return 0;
    int zero = 0;
    u64 *value = scratch.lookup(&zero);
    if (!value)
        return 0;
    for (int i = 0; i < LOOPS; i++)
        *value = *value * 6364136223846793005ULL + i;
    return 0;
}
"""


def ns_per_call(calls: int, repeats: int = 5) -> float:
    """The median over ``repeats`` runs of ``calls`` getppid(2) calls."""
    getppid = os.getppid
    runs = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            getppid()
        runs.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(runs)


def stats_of_self() -> tuple[int, int]:
    stats = program_stats(os.getpid())
    assert stats is not None
    return stats.run_time_ns, stats.run_count


def measure_loops(loops: int, calls: int) -> tuple[float, float]:
    """(ns per call seen by the caller, run_time_ns per run seen by the kernel) with the loop program."""
    from bcc import BPF

    bpf = BPF(text=LOOP, cflags=[f"-DLOOPS={loops}", f"-DTARGET={os.getpid()}"])
    try:
        t0, c0 = stats_of_self()
        caller = ns_per_call(calls, repeats=3)
        t1, c1 = stats_of_self()
    finally:
        bpf.cleanup()
    return caller, (t1 - t0) / max(1, c1 - c0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of stats off/on")
    opts = parser.parse_args()
    from bcc import BPF

    calls = opts.calls
    load = os.getloadavg()[0]
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, load {load:.2f} at start; "
          f"{calls} getppid(2) calls per run\n")
    bare = ns_per_call(calls)
    bpf = BPF(text=TRIVIAL)
    offs, ons, per_run = [], [], []
    for _ in range(opts.rounds):  # alternate, so that background load hits both alike
        offs.append(ns_per_call(calls, repeats=1))
        fd = _enable_stats_fd()
        if fd < 0:
            sys.exit(f"bpf(BPF_ENABLE_STATS) failed: {os.strerror(-fd)}")
        t0, c0 = stats_of_self()
        ons.append(ns_per_call(calls, repeats=1))
        t1, c1 = stats_of_self()
        per_run.append((t1 - t0) / max(1, c1 - c0))
        os.close(fd)
    bpf.cleanup()
    off, on = statistics.median(offs), statistics.median(ons)
    print(f"1. Overhead of BPF run-time statistics (trivial tracepoint program on getppid, median of {opts.rounds})")
    print(f"   no program            {bare:7.1f} ns/call")
    print(f"   program, stats off    {off:7.1f} ns/call  (+{off - bare:.1f} for the program)")
    print(f"   program, stats on     {on:7.1f} ns/call  (+{on - off:.1f} for the statistics)")
    print(f"   run_time_ns per run   {statistics.median(per_run):7.1f} ns (what the kernel attributes to it)\n")

    print("2. Accounting: a program looping LOOPS times per call, against the same program with LOOPS=1")
    print(f"   {'LOOPS':>6} {'caller +ns/call':>16} {'kernel +run_time_ns/run':>24} {'attributed':>11}")
    fd = _enable_stats_fd()
    try:
        for loops in (1000, 10000, 50000):
            n = max(5000, calls // max(1, loops // 20))
            base_caller, base_run = measure_loops(1, n)
            caller, run = measure_loops(loops, n)
            added, attributed = caller - base_caller, run - base_run
            print(f"   {loops:>6} {added:>16.0f} {attributed:>24.0f} {attributed / added:>10.0%}")
    finally:
        os.close(fd)
    print("   (attributed: the share of the time the loop added to each syscall that the budget counts)\n")

    bpf = BPF(text=TRIVIAL)
    repeats = 2000
    start = time.perf_counter_ns()
    for _ in range(repeats):
        program_stats(os.getpid())
    cost = (time.perf_counter_ns() - start) / repeats / 1000
    fds = len(os.listdir(f"/proc/{os.getpid()}/fdinfo"))
    bpf.cleanup()
    print("3. Reading a process's BPF statistics from /proc/PID/fdinfo")
    print(f"   {cost:.0f} µs per read with {fds} open file descriptors (the supervisor reads once a second "
          "per limited worker)")


if __name__ == "__main__":
    main()
