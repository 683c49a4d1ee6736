"""cgroup id → cgroup path, for the ids that ``bpf_get_current_cgroup_id()`` puts in events.

A cgroup v2 id is the inode number of the cgroup's directory in the unified hierarchy
(the kernfs node id). An id is looked up in three ways, cheapest first:

1. the index built by the last walk of the hierarchy;
2. ``open_by_handle_at(2)`` with the id as a kernfs file handle (what systemd and bpftool
   do): one system call, exact, and it finds a cgroup created a moment ago;
3. a new walk of the hierarchy, at most once per ``min_rescan`` seconds (for kernels or
   privileges without file handles).

The index never grows past what exists: a walk replaces it.
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

UNIFIED_CANDIDATES = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
FILEID_KERNFS = 0xFE  # include/linux/exportfs.h: the handle is the 64-bit kernfs node id
_O_PATH = getattr(os, "O_PATH", 0o10000000)


def unified_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (hybrid hosts: /sys/fs/cgroup/unified)."""
    for root in UNIFIED_CANDIDATES:
        if (root / "cgroup.procs").exists() and not (root / "tasks").exists():
            return root
    return None


class _HandleOpener:
    """``open_by_handle_at`` on the hierarchy's mount (needs CAP_DAC_READ_SEARCH)."""

    def __init__(self, root: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._call = self._libc.open_by_handle_at
        self._mount_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._root = os.path.realpath(root)

    def path(self, cgroup_id: int) -> str | None:
        handle = ctypes.create_string_buffer(struct.pack("=IiQ", 8, FILEID_KERNFS, cgroup_id))
        fd = self._call(self._mount_fd, handle, _O_PATH | os.O_CLOEXEC)
        if fd < 0:
            return None  # ESTALE: no such cgroup (any more); EPERM: no privilege
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        if target == self._root:
            return "/"
        if not target.startswith(self._root + "/"):
            return None
        return target[len(self._root):]

    def close(self) -> None:
        os.close(self._mount_fd)


class CgroupIndex:
    def __init__(self, root: Path | None = None, min_rescan: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, by_handle: bool = True) -> None:
        self.root = root if root is not None else unified_root()
        self.min_rescan = min_rescan
        self._clock = clock
        self._paths: dict[int, str] = {}
        self._last_scan = float("-inf")
        self.scans = 0
        self.handle_hits = 0
        self._handles: _HandleOpener | None = None
        if by_handle and self.root is not None:
            try:
                self._handles = _HandleOpener(self.root)
            except (OSError, AttributeError):  # no such libc call, or the root cannot be opened
                self._handles = None

    def scan(self) -> None:
        """Walk the hierarchy and rebuild the index (ids of removed cgroups disappear)."""
        self._last_scan = self._clock()
        self.scans += 1
        if self.root is None:
            self._paths = {}
            return
        paths: dict[int, str] = {}
        root = str(self.root)
        for directory, subdirs, _files in os.walk(root, onerror=lambda _e: None):
            try:
                inode = os.stat(directory).st_ino
            except OSError:
                continue
            rel = directory[len(root):] or "/"
            paths[inode] = rel
            subdirs[:] = [d for d in subdirs if not os.path.islink(os.path.join(directory, d))]
        self._paths = paths

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path below the hierarchy root ("/" for the root), or None if unknown."""
        found = self._paths.get(cgroup_id)
        if found is not None:
            return found
        if self._handles is not None and cgroup_id > 0:
            found = self._handles.path(cgroup_id)
            if found is not None:
                self.handle_hits += 1
                return found
        if self._clock() - self._last_scan >= self.min_rescan:
            self.scan()
            found = self._paths.get(cgroup_id)
        return found

    def close(self) -> None:
        if self._handles is not None:
            self._handles.close()
            self._handles = None

    def __len__(self) -> int:
        return len(self._paths)
