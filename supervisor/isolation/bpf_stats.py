"""Kernel time spent in a worker's BPF programs, and a budget for it.

The kernel counts each program's run time (``run_time_ns``, ``run_cnt`` in the fdinfo of
a program's file descriptor) only while statistics are enabled. :class:`StatsSwitch`
enables them with ``bpf(BPF_ENABLE_STATS)``: the kernel keeps them on while the returned
file descriptor is open, as a reference count, so the setting goes back by itself when the
agent exits or is killed, and several agents (or bpftool) never undo each other. Kernels
without that command (before 5.8) get the sysctl ``kernel.bpf_stats_enabled`` instead,
restored to its old value when the last user releases it.

The supervisor reads the statistics itself, from ``/proc/<worker>/fdinfo``, rather than
trusting numbers from a worker that runs user code.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("eunomia.isolation")
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0
SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}


class StatsSwitch:
    """Reference-counted: statistics are on while at least one user holds them."""

    def __init__(self, sysctl: Path = SYSCTL, enable_fd: Callable[[], int] | None = None) -> None:
        self.sysctl = sysctl
        self.enable_fd = enable_fd or _enable_stats_fd  # a seam for tests: returns an fd or -errno
        self.users = 0
        self.fd: int | None = None
        self.saved_sysctl: str | None = None
        self.mechanism = ""
        self.error = ""

    def acquire(self) -> None:
        self.users += 1
        if self.users == 1:
            self._enable()

    def release(self) -> None:
        if self.users == 0:
            return
        self.users -= 1
        if self.users == 0:
            self._disable()

    @property
    def enabled(self) -> bool:
        return self.fd is not None or self.saved_sysctl is not None

    def _enable(self) -> None:
        fd = self.enable_fd()
        if fd >= 0:
            self.fd, self.mechanism = fd, "bpf(BPF_ENABLE_STATS)"
            return
        try:
            self.saved_sysctl = self.sysctl.read_text().strip()
            self.sysctl.write_text("1")
            self.mechanism = f"sysctl kernel.bpf_stats_enabled (was {self.saved_sysctl})"
        except OSError as exc:
            self.saved_sysctl = None
            self.error = f"cannot enable BPF statistics: BPF_ENABLE_STATS: {os.strerror(-fd)}; sysctl: {exc}"
            log.warning("%s", self.error)

    def _disable(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.saved_sysctl is not None:
            try:
                self.sysctl.write_text(self.saved_sysctl)
            except OSError as exc:
                log.warning("cannot restore kernel.bpf_stats_enabled to %s: %s", self.saved_sysctl, exc)
            self.saved_sysctl = None

    def close(self) -> None:
        if self.users:
            self.users = 0
            self._disable()


def _enable_stats_fd() -> int:
    """The fd from bpf(BPF_ENABLE_STATS, BPF_STATS_RUN_TIME), or -errno."""
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        return -38  # ENOSYS
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint8 * 16)()  # union bpf_attr: enable_stats.type is its first u32
    ctypes.c_uint32.from_buffer(attr).value = BPF_STATS_RUN_TIME
    fd = libc.syscall(number, BPF_ENABLE_STATS, attr, ctypes.sizeof(attr))
    return fd if fd >= 0 else -ctypes.get_errno()


@dataclass(frozen=True, slots=True)
class ProgramStats:
    run_time_ns: int
    run_count: int
    programs: int


def program_stats(pid: int, proc: Path = Path("/proc")) -> ProgramStats | None:
    """Sum over the BPF programs the process holds (each program once); None if it is gone.

    A bpf_link's fdinfo names its program (prog_id) without the statistics: only program
    fds count, or a link read after its program would zero it."""
    seen: dict[int, tuple[int, int]] = {}
    fdinfo = proc / str(pid) / "fdinfo"
    try:
        names = os.listdir(fdinfo)
    except OSError:
        return None
    for name in names:
        try:
            text = (fdinfo / name).read_text()
        except OSError:
            continue
        if "prog_id:" not in text or "run_cnt:" not in text:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        try:
            seen[int(fields["prog_id"])] = (int(fields.get("run_time_ns", 0)), int(fields.get("run_cnt", 0)))
        except (KeyError, ValueError):
            continue
    return ProgramStats(sum(t for t, _ in seen.values()), sum(c for _, c in seen.values()), len(seen))


class BudgetWindow:
    """Run time over a sliding window: over budget once the window is full and the average exceeds it."""

    def __init__(self, budget_ms_per_s: float, window: float) -> None:
        self.budget = budget_ms_per_s
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, run_time_ns: int) -> None:
        if self.samples and run_time_ns < self.samples[-1][1]:
            self.samples.clear()  # a new process (or a program went away): start over
        self.samples.append((now, run_time_ns))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def span(self) -> float:
        return self.samples[-1][0] - self.samples[0][0] if len(self.samples) > 1 else 0.0

    def rate_ms_per_s(self) -> float | None:
        span = self.span()
        if span <= 0:
            return None
        return (self.samples[-1][1] - self.samples[0][1]) / 1e6 / span

    def over(self) -> bool:
        rate = self.rate_ms_per_s()
        return self.budget > 0 and rate is not None and self.span() >= self.window and rate > self.budget

    def reset(self) -> None:
        self.samples.clear()
