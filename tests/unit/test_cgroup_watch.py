"""The cgroup watcher registers directories as they are made and removed (inotify, on a plain directory tree)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from supervisor.containers.cgroup_watch import CgroupWatcher


class Recorder:
    def __init__(self) -> None:
        self.created: dict[int, str] = {}
        self.removed: list[int] = []

    def cgroup_created(self, cgroup_id: int, path: str) -> None:
        self.created[cgroup_id] = path

    def cgroup_removed(self, cgroup_id: int) -> None:
        self.removed.append(cgroup_id)


def wait(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_existing_new_nested_and_removed_directories(tmp_path: Path) -> None:
    (tmp_path / "system.slice").mkdir()
    sink = Recorder()
    watcher = CgroupWatcher(tmp_path, sink, poll_ms=20)
    watcher.start()
    try:
        wait(lambda: "/system.slice" in sink.created.values(), "the existing directory")
        assert sink.created[os.stat(tmp_path).st_ino] == "/"
        deep = tmp_path / "kubepods" / "pod1" / "ctr"
        deep.mkdir(parents=True)  # faster than the watcher can add watches: the walk finds the children
        wait(lambda: os.stat(deep).st_ino in sink.created, "the nested directory")
        inode = os.stat(deep).st_ino
        assert sink.created[inode] == "/kubepods/pod1/ctr"
        deep.rmdir()
        wait(lambda: inode in sink.removed, "the removal")
        (tmp_path / "a-file").write_text("x")  # files are not cgroups
        time.sleep(0.1)
        assert all(not p.endswith("a-file") for p in sink.created.values())
        assert watcher.stats.watches >= 4 and watcher.stats.watch_errors == 0
    finally:
        watcher.stop()
