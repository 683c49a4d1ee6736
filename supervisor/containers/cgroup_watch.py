"""Tells the registry of every cgroup as it is created or removed (inotify on the unified hierarchy).

A container runtime creates the container's cgroup before it starts the container's first
process, and removes it some time after the last one ends. Registering each cgroup's id
at ``mkdir`` time is what lets the events of a container that lived a millisecond still
resolve: by the time those events reach the supervisor the directory may be gone, and
with it the only way from the id to the path. Every directory of the hierarchy gets a
watch (one per cgroup; a full watch table is counted and logged, and lookups fall back
to the lazy path).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from inotify_simple import INotify, flags

log = logging.getLogger("eunomia.containers.cgroups")

_MASK = flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO | flags.ONLYDIR


class CgroupSink(Protocol):
    def cgroup_created(self, cgroup_id: int, path: str) -> None: ...

    def cgroup_removed(self, cgroup_id: int) -> None: ...


@dataclass(slots=True)
class WatchStats:
    watches: int = 0
    created: int = 0
    removed: int = 0
    overflows: int = 0  # the kernel's inotify queue overflowed: the hierarchy was walked again
    watch_errors: int = 0  # directories that could not be watched (inotify watch limit)


class CgroupWatcher:
    def __init__(self, root: Path, sink: CgroupSink, poll_ms: int = 250) -> None:
        self.root = str(root)
        self.sink = sink
        self.poll_ms = poll_ms
        self.stats = WatchStats()
        self._inotify: INotify | None = None
        self._wds: dict[int, str] = {}  # watch descriptor → path below the root
        self._inodes: dict[str, int] = {}  # path below the root → cgroup id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._limit_logged = False

    def start(self) -> None:
        self._inotify = INotify()
        self._thread = threading.Thread(target=self._run, name="containers-cgroups", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def _run(self) -> None:
        assert self._inotify is not None
        try:
            self._add_tree("/")
            while not self._stop.is_set():
                for event in self._inotify.read(timeout=self.poll_ms):
                    self._on_event(event.wd, event.mask, event.name)
        except Exception:  # keep the agent up; lookups fall back to the lazy path
            log.exception("cgroup watcher stopped")

    def _on_event(self, wd: int, mask: int, name: str) -> None:
        if mask & flags.Q_OVERFLOW:
            self.stats.overflows += 1
            self._add_tree("/")
            return
        if mask & flags.IGNORED:
            self._wds.pop(wd, None)
            self.stats.watches = len(self._wds)
            return
        parent = self._wds.get(wd)
        if parent is None or not mask & flags.ISDIR or not name:
            return
        path = parent.rstrip("/") + "/" + name
        if mask & (flags.CREATE | flags.MOVED_TO):
            self._add_tree(path)
        elif mask & (flags.DELETE | flags.MOVED_FROM):
            for known in [p for p in self._inodes if p == path or p.startswith(path + "/")]:
                self.sink.cgroup_removed(self._inodes.pop(known))
                self.stats.removed += 1

    def _add_tree(self, top: str) -> None:
        """Watch and register a directory and everything below it (children may predate the watch).

        Each directory is watched before it is listed: a child made before the watch is in
        the listing, one made after it comes as an event (both: registered once)."""
        assert self._inotify is not None
        pending = [top]
        while pending:
            rel = pending.pop()
            directory = self.root if rel == "/" else self.root + rel
            try:
                inode = os.stat(directory).st_ino
            except OSError:
                continue
            if self._inodes.get(rel) != inode:
                self._inodes[rel] = inode
                self.sink.cgroup_created(inode, rel)
                self.stats.created += 1
            self._watch(directory, rel)
            try:
                with os.scandir(directory) as entries:
                    pending.extend(rel.rstrip("/") + "/" + e.name for e in entries if e.is_dir(follow_symlinks=False))
            except OSError:
                continue
        self.stats.watches = len(self._wds)

    def _watch(self, directory: str, rel: str) -> None:
        assert self._inotify is not None
        try:
            self._wds[self._inotify.add_watch(directory, _MASK)] = rel
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                self.stats.watch_errors += 1
                if not self._limit_logged:
                    self._limit_logged = True
                    log.warning("cannot watch %s: %s (fs.inotify.max_user_watches?); new cgroups below it are"
                                " found when their events arrive", directory, exc)
