"""When has bpftrace really attached its probes?

bpftrace prints ``attached_probes`` *before* it attaches them, and runs ``BEGIN`` before
them too, so neither says that tracing has started; a worker that reported ready on
either lost the first events of a busy (or CPU-limited) start. The kernel knows: for each
perf-event file descriptor of the bpftrace process, ``bpf(BPF_TASK_FD_QUERY)`` (what
``bpftool perf`` uses) answers whether a BPF program is attached to it as a tracepoint,
kprobe or uprobe. The worker waits until that count reaches the number of such probes in
the script.
"""

from __future__ import annotations

import ctypes
import os
import platform
import time
from collections.abc import Callable

from workers.bt_script import probe_kind

BPF_TASK_FD_QUERY = 20
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
#: Probe kinds that bpftrace attaches through a perf event (one or more each, with wildcards).
PERF_ATTACHED = frozenset({"tracepoint", "kprobe", "kretprobe", "uprobe", "uretprobe", "usdt"})


class _TaskFdQuery(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("fd", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("buf_len", ctypes.c_uint32), ("buf", ctypes.c_uint64), ("prog_id", ctypes.c_uint32),
                ("fd_type", ctypes.c_uint32), ("probe_offset", ctypes.c_uint64), ("probe_addr", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)


def expected_attachments(probes: list[str]) -> int:
    """How many perf-event attachments the script's probes make at least."""
    return sum(1 for p in probes if probe_kind(p)[0] in PERF_ATTACHED)


def attached_programs(pid: int, proc: str = "/proc") -> int:
    """Perf events of process ``pid`` that have a BPF program attached (tracepoint, kprobe, uprobe)."""
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        return 0
    count = 0
    try:
        fds = os.listdir(f"{proc}/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"{proc}/{pid}/fd/{fd}") != "anon_inode:[perf_event]":
                continue
        except OSError:
            continue
        query = _TaskFdQuery(pid=pid, fd=int(fd))
        if _libc.syscall(number, BPF_TASK_FD_QUERY, ctypes.byref(query), ctypes.sizeof(query)) == 0:
            count += 1
    return count


def wait_attached(pid: int, expected: int, timeout: float, alive: Callable[[], bool],
                  count: Callable[[int], int] = attached_programs, sleep: float = 0.02) -> bool:
    """True once ``expected`` attachments exist; False after ``timeout`` or when the process is gone."""
    deadline = time.monotonic() + timeout
    while True:
        if count(pid) >= expected:
            return True
        if not alive() or time.monotonic() >= deadline:
            return False
        time.sleep(sleep)
