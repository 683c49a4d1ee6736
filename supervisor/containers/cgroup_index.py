"""cgroup id → cgroup path, for the ids that ``bpf_get_current_cgroup_id()`` puts in events.

A cgroup v2 id is the inode number of the cgroup's directory in the unified hierarchy, so
the index is a walk of that tree. Containers come and go, so a miss triggers a new walk
(at most once per ``min_rescan`` seconds), and the index never grows past what exists.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

UNIFIED_CANDIDATES = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def unified_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (hybrid hosts: /sys/fs/cgroup/unified)."""
    for root in UNIFIED_CANDIDATES:
        if (root / "cgroup.procs").exists() and not (root / "tasks").exists():
            return root
    return None


class CgroupIndex:
    def __init__(self, root: Path | None = None, min_rescan: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root if root is not None else unified_root()
        self.min_rescan = min_rescan
        self._clock = clock
        self._paths: dict[int, str] = {}
        self._last_scan = float("-inf")
        self.scans = 0

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
        if found is None and self._clock() - self._last_scan >= self.min_rescan:
            self.scan()
            found = self._paths.get(cgroup_id)
        return found

    def __len__(self) -> int:
        return len(self._paths)
