#!/usr/bin/env python3
"""Nanoseconds that syscall counting adds to every system call: Eunomia's syscount next
to bcc's syscount-bpfcc and the equivalent bpftrace one-liner, measured in one run.

A C loop calls getppid(2) N times and reports ns per call. Each tool counts every
syscall on the host by syscall number (no filter), in the kernel. Rounds are interleaved
(baseline, eunomia, bcc, bpftrace, baseline, …) and the median of each is reported.
Needs root, gcc, and the Debian packages bpfcc-tools and bpftrace (`make bench-deps`).

Beside the added time the loop sees, each round also runs the loop once with BPF run-time
statistics on (bpf(BPF_ENABLE_STATS)) and reports the kernel's own figure for each tool:
nanoseconds per program run (run_time_ns / run_cnt of the tool's programs). It is much
less noisy than the loop's time on a VM, but the statistics themselves add to every run,
so these loops are kept out of the added-time figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from supervisor.isolation.bpf_stats import StatsSwitch, program_stats  # noqa: E402

PY = REPO / ".venv" / "bin" / "python"
LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""
# Every tool gets this long after it says it is ready before the loop starts: bpftrace
# prints before it has attached, and Eunomia hands the busiest cgroups their rows of the
# fast path once a second (workers/cgroup_rows.py).
SETTLE = 1.5
BPFTRACE_PROGRAM = "tracepoint:raw_syscalls:sys_exit { @[args->id] = count(); }"


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> None:
    """Read the tool's stderr+stdout until it says it is attached."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before it was ready")
        if needle in line:
            return
    raise RuntimeError(f"{proc.args[0]} not ready after {timeout}s")


def tool_eunomia(*options: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([str(PY), "-m", "supervisor.cli.main", "trace", "syscount", "--interval", "3600",
                             *options], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_line(proc, "Hit Ctrl-C to end")
    return proc


def tool_eunomia_host() -> subprocess.Popen[str]:
    """With the in-kernel cgroup filter on (--host; the loop is a host process, so it passes)."""
    return tool_eunomia("--host")


def tool_eunomia_hash() -> subprocess.Popen[str]:
    """Without cgroup rows: every count goes through the hash map, as for a cgroup that has no row."""
    return tool_eunomia("--cgroup-rows", "0")


def tool_bcc() -> subprocess.Popen[str]:
    exe = shutil.which("syscount-bpfcc") or "/usr/sbin/syscount-bpfcc"
    proc = subprocess.Popen([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_line(proc, "Tracing syscalls")
    return proc


def tool_bpftrace() -> subprocess.Popen[str]:
    proc = subprocess.Popen(["bpftrace", "-e", BPFTRACE_PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    _wait_for_line(proc, "Attaching")
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def measure(loop: Path, calls: int) -> float:
    out = subprocess.run([str(loop), str(calls)], check=True, capture_output=True, text=True).stdout
    return float(out)


def _tree_run_stats(proc: subprocess.Popen[str]) -> tuple[int, int]:
    """(run_time_ns, run_cnt) summed over the BPF programs of the tool and its descendants."""
    time_ns = runs = 0
    for pid in [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]:
        stats = program_stats(pid)
        if stats is not None:
            time_ns += stats.run_time_ns
            runs += stats.run_count
    return time_ns, runs


def kernel_ns_per_run(proc: subprocess.Popen[str], loop: Path, calls: int, switch: StatsSwitch) -> float:
    """The tool's programs' own time per run while the loop runs, from the kernel's statistics."""
    switch.acquire()
    try:
        before = _tree_run_stats(proc)
        measure(loop, calls)
        after = _tree_run_stats(proc)
    finally:
        switch.release()
    runs = after[1] - before[1]
    return (after[0] - before[0]) / runs if runs else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3_000_000, help="getppid calls per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--filter", action="store_true",
                        help="also measure Eunomia's syscount with the cgroup filter on (--host)")
    parser.add_argument("--hash-path", action="store_true",
                        help="also measure Eunomia's syscount with --cgroup-rows 0 "
                             "(the path of a cgroup without a row)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    missing = [t for t in ("gcc", "bpftrace") if not shutil.which(t)]
    if not (shutil.which("syscount-bpfcc") or Path("/usr/sbin/syscount-bpfcc").exists()):
        missing.append("syscount-bpfcc (bpfcc-tools)")
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (run `make bench-deps`)")
    tools: dict[str, Callable[[], subprocess.Popen[str]] | None] = {
        "baseline": None, "eunomia syscount": tool_eunomia, "syscount-bpfcc": tool_bcc, "bpftrace": tool_bpftrace}
    if args.filter:
        tools["eunomia --host"] = tool_eunomia_host
    if args.hash_path:
        tools["eunomia no rows"] = tool_eunomia_hash
    results: dict[str, list[float]] = {name: [] for name in tools}
    kernel: dict[str, list[float]] = {name: [] for name, start in tools.items() if start}
    switch = StatsSwitch()
    with tempfile.TemporaryDirectory() as tmp:
        loop = Path(tmp) / "loop"
        (Path(tmp) / "loop.c").write_text(LOOP_C)
        subprocess.run(["gcc", "-O2", "-o", str(loop), str(Path(tmp) / "loop.c")], check=True)
        measure(loop, args.calls // 10)  # warm up
        for round_ in range(args.rounds):
            for name, start in tools.items():
                proc = start() if start else None
                if proc is not None:
                    time.sleep(SETTLE)
                try:
                    results[name].append(measure(loop, args.calls))
                    if proc is not None:
                        kernel[name].append(kernel_ns_per_run(proc, loop, args.calls // 3, switch))
                finally:
                    if proc is not None:
                        _stop(proc)
            print(f"round {round_ + 1}/{args.rounds}: " +
                  ", ".join(f"{n} {v[-1]:.1f}" for n, v in results.items()) + "; program ns/run " +
                  ", ".join(f"{n} {v[-1]:.1f}" for n, v in kernel.items()), file=sys.stderr)
    base = statistics.median(results["baseline"])
    print(f"syscount overhead, {time.strftime('%Y-%m-%d %H:%M:%S')}, kernel {platform.release()}, "
          f"nproc {os.cpu_count()}; getppid(2) x {args.calls:,}, {args.rounds} interleaved rounds, medians")
    print(f"{'tool':<20} {'ns/syscall':>11} {'added ns':>9} {'prog ns/run':>12}  rounds")
    report = {}
    for name, values in results.items():
        med = statistics.median(values)
        prog = statistics.median(kernel[name]) if kernel.get(name) else float("nan")
        report[name] = {"ns_per_call": med, "added_ns": med - base, "rounds": values,
                        "program_ns_per_run": prog, "program_rounds": kernel.get(name, [])}
        print(f"{name:<20} {med:>11.1f} {med - base:>9.1f} {prog:>12.1f}  " + " ".join(f"{v:.1f}" for v in values))
    ours = report["eunomia syscount"]["added_ns"]
    peers = {k: v["added_ns"] for k, v in report.items() if not k.startswith(("baseline", "eunomia"))}
    verdict = "PASS" if all(ours <= v * 1.05 + 2 for v in peers.values()) else "FAIL"
    print(f"[{verdict}] Eunomia adds {ours:.1f} ns per syscall; " +
          ", ".join(f"{k} {v:.1f} ns" for k, v in peers.items()) + " (target: no slower than either)")
    ours_prog = report["eunomia syscount"]["program_ns_per_run"]
    print(f"program time per run (kernel statistics): Eunomia {ours_prog:.1f} ns; " +
          ", ".join(f"{k} {report[k]['program_ns_per_run']:.1f} ns" for k in peers))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "syscount_overhead.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
