"""Give up privileges a worker no longer needs once its probes are attached.

Compiling, loading and attaching BPF programs needs root's capabilities; reading the ring
buffer and the maps afterwards does not: the kernel checks capabilities when a map or a
program is created, not when a process uses a file descriptor it already holds (since
Linux 6.5 even with ``kernel.unprivileged_bpf_disabled``). So before any user-supplied
code (``hook.py``) runs, the worker of an untrusted tracer:

* sets ``no_new_privs`` and empties its capability bounding set — both at start, before
  ZeroMQ creates its I/O thread, because both are per-thread and inherited by new threads;
* after the attach, switches to an unprivileged user (``nobody`` by default) with no
  supplementary groups. glibc applies the uid change to every thread, and the kernel
  clears the capabilities of a thread that leaves uid 0. Staying uid 0 without
  capabilities is weaker: root still owns most files (e.g. ``/dev/kmsg``, cgroup files),
  so the user switch is the default;
* clears its capabilities explicitly (``capset(2)`` through ctypes: no library needed);
* re-arms the parent-death signal, which the kernel resets on a uid change.

:func:`verify` then reads ``/proc/self/task/*/status`` and refuses to go on unless every
thread has ``CapEff`` 0 and ``NoNewPrivs`` 1.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class PrivilegeError(OSError):
    """A step of the drop failed; the worker must not run user code."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _prctl(option: int, arg: int = 0, what: str = "") -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(err, f"prctl({what or option}): {os.strerror(err)}")


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def restrict_future_privileges() -> None:
    """no_new_privs and an empty bounding set: call before any thread is created."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    for cap in range(_last_cap() + 1):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            err = ctypes.get_errno()
            raise PrivilegeError(err, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(err)}")


def clear_capabilities() -> None:
    """Empty the calling thread's effective, permitted and inheritable sets, and the ambient set."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "PR_CAP_AMBIENT_CLEAR_ALL")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(err, f"capset: {os.strerror(err)}")


def switch_user(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def rearm_parent_death(expected_parent: int) -> None:
    """The kernel clears PR_SET_PDEATHSIG when the uid changes: set it again and re-check the parent."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if os.getppid() != expected_parent:
        os._exit(3)


def _status(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


@dataclass(frozen=True, slots=True)
class PrivilegeReport:
    uid: int
    gid: int
    threads: int


def verify() -> PrivilegeReport:
    """Every thread of this process has no effective or permitted capability and no_new_privs set."""
    tasks = sorted(Path("/proc/self/task").iterdir())
    for task in tasks:
        status = _status(task / "status")
        if int(status.get("CapEff", "1"), 16) or int(status.get("CapPrm", "1"), 16):
            raise PrivilegeError(1, f"thread {task.name} still has capabilities (CapEff {status.get('CapEff')})")
        if status.get("NoNewPrivs") != "1":
            raise PrivilegeError(1, f"thread {task.name} has no_new_privs unset")
    return PrivilegeReport(os.getuid(), os.getgid(), len(tasks))


def drop_privileges(uid: int | None, gid: int | None, parent: int) -> PrivilegeReport:
    """After the attach, before user code: another user (unless ``uid`` is None), no capabilities."""
    if uid is not None:
        switch_user(uid, gid if gid is not None else uid)
        rearm_parent_death(parent)
    clear_capabilities()
    return verify()


def limit_address_space(extra_bytes: int) -> int:
    """Fallback memory limit without cgroups: RLIMIT_AS at what is mapped now plus ``extra_bytes``."""
    mapped = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            mapped = int(line.split()[1]) * 1024
    limit = mapped + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def lower_priority(nice: int) -> None:
    """Fallback CPU limit without cgroups: the lowest scheduling weight, for every thread."""
    for task in Path("/proc/self/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
        except OSError:
            continue
