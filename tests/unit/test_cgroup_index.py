"""cgroup id → path: the inode of the directory in the unified hierarchy."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.containers.cgroup_index import CgroupIndex


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ids_are_directory_inodes_and_misses_rescan(tmp_path: Path) -> None:
    (tmp_path / "system.slice" / "docker-abc.scope").mkdir(parents=True)
    clock = FakeClock()
    index = CgroupIndex(tmp_path, min_rescan=1.0, clock=clock)
    inode = os.stat(tmp_path / "system.slice" / "docker-abc.scope").st_ino
    assert index.path(inode) == "/system.slice/docker-abc.scope"
    assert index.path(os.stat(tmp_path).st_ino) == "/"
    scans = index.scans
    (tmp_path / "kubepods").mkdir()
    new = os.stat(tmp_path / "kubepods").st_ino
    assert index.path(new) is None and index.scans == scans  # rescans are rate-limited
    clock.now += 1.0
    assert index.path(new) == "/kubepods" and index.scans == scans + 1


def test_removed_cgroups_leave_the_index(tmp_path: Path) -> None:
    (tmp_path / "gone").mkdir()
    index = CgroupIndex(tmp_path, min_rescan=0.0)
    index.scan()
    size = len(index)
    (tmp_path / "gone").rmdir()
    index.scan()
    assert len(index) == size - 1


def test_no_hierarchy_means_no_paths() -> None:
    index = CgroupIndex(root=None)
    index.root = None
    assert index.path(12345) is None
