"""The few /proc and cgroupfs reads container resolution needs; each returns None when the process is gone."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.containers.info import Namespaces


def read_proc_cgroup(pid: int) -> str | None:
    """The text of /proc/PID/cgroup."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            return fh.read()
    except OSError:
        return None


def _ns_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def namespaces_of(pid: int) -> Namespaces:
    """The mnt, pid and net namespace inodes of a process (what ``lsns`` and ``readlink /proc/PID/ns/*`` show).

    All three or none: an exiting process (a zombie) has already left its mount and
    network namespaces, and half an answer would read as a different container.
    """
    found = Namespaces(mnt=_ns_inode(pid, "mnt"), pid=_ns_inode(pid, "pid"), net=_ns_inode(pid, "net"))
    return found if None not in (found.mnt, found.pid, found.net) else Namespaces()


def first_pid(cgroup_dir: Path) -> int | None:
    """A process in a cgroup (the first in cgroup.procs), or None if it is empty or gone."""
    try:
        with open(cgroup_dir / "cgroup.procs") as fh:
            line = fh.readline().strip()
    except OSError:
        return None
    return int(line) if line.isdigit() else None
