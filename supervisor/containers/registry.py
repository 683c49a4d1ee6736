"""The container cache: cgroup id → the event columns of its container (or of the host).

Two kinds of knowledge meet here, each kept current by its own thread:

* **cgroups** (cgroup id → path → runtime, container id, pod uid), from the cgroup watcher
  as cgroups are created, or looked up lazily through the :class:`CgroupIndex` on a miss;
* **containers** (container id → name, image, labels, namespaces), from the runtime
  sources' initial lists and event streams.

A container that goes away is kept for ``grace`` seconds, so that events that arrive after
it (a ``docker run --rm`` that lived for a moment) still resolve; then it is released.
Both maps are bounded; what is dropped to honour a bound is counted.

Thread-safe (one lock). :meth:`resolve` is cheap — dictionary lookups — except on a miss,
which costs one ``open_by_handle_at`` (or a rate-limited walk of the hierarchy). The
enricher calls it once per distinct cgroup per batch, not once per event.

On a host without a cgroup v2 hierarchy (v1 only), every task has the same cgroup id,
so the registry resolves by pid instead, from /proc/PID/cgroup (cached for ``pid_ttl``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from supervisor.containers.cgroup_index import CgroupIndex
from supervisor.containers.cgroup_paths import CgroupContainer, container_of_process, parse_cgroup_path
from supervisor.containers.info import HOST_ROW, UNKNOWN_ROW, ContainerInfo, Namespaces, Row, container_row
from supervisor.containers.procfs import first_pid, namespaces_of, read_proc_cgroup

PRUNE_EVERY = 1.0


log = logging.getLogger("eunomia.containers")

@dataclass(slots=True)
class RegistryStats:
    resolves: int = 0  # lookups asked for (per distinct cgroup per batch, not per event)
    cgroup_misses: int = 0  # cgroup ids not cached: looked up through the index
    unresolved: int = 0  # … and not found there either: the events got container_runtime=unknown
    unnamed: int = 0  # resolved to a container that no runtime source describes (id only)
    released: int = 0  # removed containers released after the grace period
    container_evictions: int = 0  # containers dropped to stay within max_containers
    cgroup_evictions: int = 0  # cgroup entries dropped to stay within max_cgroups
    pid_lookups: int = 0  # /proc/PID/cgroup reads (hosts without cgroup v2)


@dataclass(slots=True)
class _Cgroup:
    path: str
    container: CgroupContainer | None  # None: a host cgroup
    removed_at: float | None = None
    namespaces: Namespaces | None = None  # read once, for containers no source describes


@dataclass(slots=True)
class _Container:
    info: ContainerInfo
    removed_at: float | None = None


@dataclass(frozen=True, slots=True)
class KnownContainer:
    """A container as ``GET /containers`` lists it: what its source says, or only what its cgroup path says."""

    info: ContainerInfo
    removed_at: float | None  # monotonic time of removal; released ``grace`` seconds later
    cgroup_ids: tuple[int, ...] = ()
    source: bool = True  # False: known from a cgroup path only (no runtime API describes it)


class ContainerRegistry:
    def __init__(self, index: CgroupIndex | None = None, *, grace: float = 60.0, max_containers: int = 4096,
                 max_cgroups: int = 65536, pid_ttl: float = 5.0, by_pid: bool | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 read_cgroup_of: Callable[[int], str | None] = read_proc_cgroup,
                 namespaces_of_pid: Callable[[int], Namespaces] = namespaces_of) -> None:
        self.index = index
        self.grace = grace
        self.max_containers = max_containers
        self.max_cgroups = max_cgroups
        self.pid_ttl = pid_ttl
        self.by_pid = by_pid if by_pid is not None else (index is None or index.root is None)
        self._clock = clock
        self._read_cgroup_of = read_cgroup_of
        self._namespaces_of = namespaces_of_pid
        self._lock = threading.RLock()
        self._containers: OrderedDict[str, _Container] = OrderedDict()
        self._cgroups: OrderedDict[int, _Cgroup] = OrderedDict()
        self._cgroups_of: dict[str, set[int]] = {}  # container id → its cached cgroup ids
        self._pids: OrderedDict[int, tuple[float, _Cgroup | None]] = OrderedDict()
        self._next_prune = 0.0
        # Removals in time order, so that pruning costs what it releases, not the size of the maps.
        self._removed_containers: deque[tuple[float, str]] = deque()
        self._removed_cgroups: deque[tuple[float, int]] = deque()
        self.generation = 0  # bumped whenever a cached answer may have changed
        self.stats = RegistryStats()
        self.sources: dict[str, str] = {}  # runtime → its source's state ("connected", or why not)
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the thread that made the change, outside the lock) whenever a
        container or a container cgroup appears or goes: the cgroup filters follow at once."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            try:
                callback()
            except Exception:  # a listener must not break the source's thread
                log.exception("container change listener failed")

    # -- the hot side: the events loop ------------------------------------------------
    def resolve(self, cgroup_id: Any, pid: Any = None) -> Row:
        """The event columns (info.EVENT_COLUMNS) for a task in this cgroup (or, without cgroup v2, this pid)."""
        with self._lock:
            self.stats.resolves += 1
            now = self._clock()
            if now >= self._next_prune:
                self._prune(now)
            cgroup = self._by_pid(pid, now) if self.by_pid else self._by_cgroup_id(cgroup_id)
            if cgroup is None:
                return UNKNOWN_ROW
            found = cgroup.container
            if found is None:
                return HOST_ROW
            entry = self._containers.get(found.container_id)
            if entry is not None:
                return container_row(found.runtime, found.container_id, found.pod_uid, entry.info)
            self.stats.unnamed += 1
            ns = cgroup.namespaces
            if ns is None:
                ns = self._namespaces_in(cgroup, pid)
                if ns.mnt is not None:  # kept once known; an empty cgroup is asked again next time
                    cgroup.namespaces = ns
            row = container_row(found.runtime, found.container_id, found.pod_uid, None)
            return (*row[:-3], ns.mnt, ns.pid, ns.net)

    def _by_cgroup_id(self, cgroup_id: Any) -> _Cgroup | None:
        if type(cgroup_id) is not int or cgroup_id <= 0:
            self.stats.unresolved += 1
            return None
        cached = self._cgroups.get(cgroup_id)
        if cached is not None:
            self._cgroups.move_to_end(cgroup_id)
            return cached
        self.stats.cgroup_misses += 1
        path = self.index.path(cgroup_id) if self.index is not None else None
        if path is None:
            self.stats.unresolved += 1
            return None
        return self._remember(cgroup_id, path)

    def _by_pid(self, pid: Any, now: float) -> _Cgroup | None:
        if type(pid) is not int or pid <= 0:
            self.stats.unresolved += 1
            return None
        cached = self._pids.get(pid)
        if cached is not None and cached[0] > now:
            return cached[1]
        self.stats.pid_lookups += 1
        text = self._read_cgroup_of(pid)
        cgroup = None
        if text is not None:
            cgroup = _Cgroup(path="", container=container_of_process(text))
        else:
            self.stats.unresolved += 1
        self._pids[pid] = (now + self.pid_ttl, cgroup)
        self._pids.move_to_end(pid)
        while len(self._pids) > self.max_cgroups:
            self._pids.popitem(last=False)
            self.stats.cgroup_evictions += 1
        return cgroup

    def _namespaces_in(self, cgroup: _Cgroup, pid: Any) -> Namespaces:
        """Namespaces of a container no source describes: those of a process in its cgroup."""
        if self.by_pid and type(pid) is int:
            return self._namespaces_of(pid)
        if self.index is None or self.index.root is None:
            return Namespaces()
        member = first_pid(self.index.root / cgroup.path.lstrip("/"))
        return self._namespaces_of(member) if member is not None else Namespaces()

    # -- the cgroup watcher ---------------------------------------------------------
    def cgroup_created(self, cgroup_id: int, path: str) -> None:
        with self._lock:
            entry = self._remember(cgroup_id, path)
            self.generation += 1
        if entry.container is not None:
            self._changed()

    def cgroup_removed(self, cgroup_id: int) -> None:
        with self._lock:
            cached = self._cgroups.get(cgroup_id)
            if cached is not None and cached.removed_at is None:
                cached.removed_at = self._clock()
                self._removed_cgroups.append((cached.removed_at, cgroup_id))

    def _remember(self, cgroup_id: int, path: str) -> _Cgroup:
        entry = _Cgroup(path, parse_cgroup_path(path))
        self._cgroups[cgroup_id] = entry
        self._cgroups.move_to_end(cgroup_id)
        if entry.container is not None:
            self._cgroups_of.setdefault(entry.container.container_id, set()).add(cgroup_id)
        while len(self._cgroups) > self.max_cgroups:
            old_id, old = self._cgroups.popitem(last=False)
            self._unlink(old_id, old)
            self.stats.cgroup_evictions += 1
        return entry

    def _unlink(self, cgroup_id: int, cgroup: _Cgroup) -> None:
        if cgroup.container is not None:
            ids = self._cgroups_of.get(cgroup.container.container_id)
            if ids is not None:
                ids.discard(cgroup_id)
                if not ids:
                    del self._cgroups_of[cgroup.container.container_id]

    # -- the runtime sources ----------------------------------------------------------
    def upsert(self, info: ContainerInfo) -> None:
        """A container was listed, created, started, renamed or updated."""
        with self._lock:
            self._containers[info.id] = _Container(info)
            self._containers.move_to_end(info.id)
            while len(self._containers) > self.max_containers:
                self._evict_one()
            self.generation += 1
        self._changed()

    def update_state(self, container_id: str, state: str) -> None:
        with self._lock:
            entry = self._containers.get(container_id)
            if entry is not None and entry.removed_at is None:
                entry.info = entry.info.with_state(state)
                self.generation += 1

    def removed(self, container_id: str) -> None:
        """A container was destroyed: keep it for the grace period, then release it."""
        with self._lock:
            entry = self._containers.get(container_id)
            if entry is not None and entry.removed_at is None:
                entry.removed_at = self._clock()
                self._removed_containers.append((entry.removed_at, container_id))
                entry.info = entry.info.with_state("removed")
                self.generation += 1
        self._changed()

    def resync(self, runtime: str, infos: Iterable[ContainerInfo]) -> None:
        """A source's full list (at start, after a reconnect): what it no longer lists was removed."""
        with self._lock:
            listed = set()
            for info in infos:
                listed.add(info.id)
                self.upsert(info)
            for cid, entry in list(self._containers.items()):
                if entry.info.runtime == runtime and cid not in listed:
                    self.removed(cid)

    def known(self, container_id: str) -> ContainerInfo | None:
        with self._lock:
            entry = self._containers.get(container_id)
            return entry.info if entry is not None else None

    def _evict_one(self) -> None:
        victim = next((cid for cid, e in self._containers.items() if e.removed_at is not None), None)
        if victim is None:
            victim = next(iter(self._containers))
        del self._containers[victim]
        self.stats.container_evictions += 1

    # -- time ---------------------------------------------------------------------------
    def prune(self) -> None:
        with self._lock:
            self._prune(self._clock())

    def _prune(self, now: float) -> None:
        self._next_prune = now + PRUNE_EVERY
        expired = now - self.grace
        while self._removed_containers and self._removed_containers[0][0] <= expired:
            when, cid = self._removed_containers.popleft()
            entry = self._containers.get(cid)
            if entry is None or entry.removed_at != when:
                continue  # evicted already, or seen again since
            del self._containers[cid]
            self.stats.released += 1
            for cgroup_id in self._cgroups_of.pop(cid, set()):
                self._cgroups.pop(cgroup_id, None)
            self.generation += 1
        while self._removed_cgroups and self._removed_cgroups[0][0] <= expired:
            when, cgroup_id = self._removed_cgroups.popleft()
            cgroup = self._cgroups.get(cgroup_id)
            if cgroup is not None and cgroup.removed_at == when:
                self._unlink(cgroup_id, self._cgroups.pop(cgroup_id))
        while self._pids:  # in expiry order: every entry is moved to the end when it is (re)set
            pid, (expires, _cgroup) = next(iter(self._pids.items()))
            if expires > now:
                break
            del self._pids[pid]

    # -- what the API shows -----------------------------------------------------------
    def now(self) -> float:
        return self._clock()

    def containers(self) -> list[KnownContainer]:
        """Every container known: described by a source, or only seen in a cgroup path."""
        with self._lock:
            out = [KnownContainer(e.info, e.removed_at, tuple(sorted(self._cgroups_of.get(cid, ()))))
                   for cid, e in self._containers.items()]
            for cid, cgroup_ids in self._cgroups_of.items():
                if cid in self._containers:
                    continue
                cgroups = [self._cgroups[i] for i in sorted(cgroup_ids)]
                first = cgroups[0].container
                assert first is not None
                removed = [c.removed_at for c in cgroups if c.removed_at is not None]
                gone = max(removed) if len(removed) == len(cgroups) else None
                ns = next((c.namespaces for c in cgroups if c.namespaces is not None), Namespaces())
                labels = {"io.kubernetes.pod.uid": first.pod_uid} if first.pod_uid else {}
                state = "removed" if gone is not None else "running"
                info = ContainerInfo(cid, first.runtime, labels=labels, state=state, namespaces=ns)
                out.append(KnownContainer(info, gone, tuple(sorted(cgroup_ids)), source=False))
            return out

    def find(self, ref: str) -> KnownContainer | None:
        """A container by full id, unique id prefix, or name."""
        known = self.containers()
        for match in (lambda k: k.info.id == ref, lambda k: k.info.name == ref):
            found = [k for k in known if match(k)]
            if found:
                return found[0]
        prefixed = [k for k in known if k.info.id.startswith(ref)] if ref else []
        return prefixed[0] if len(prefixed) == 1 else None

    def summary(self) -> dict[str, Any]:
        with self._lock:
            removed = sum(1 for e in self._containers.values() if e.removed_at is not None)
            return {"mode": "pid" if self.by_pid else "cgroup_id", "grace_seconds": self.grace,
                    "containers": len(self._containers), "removed_in_grace": removed,
                    "cgroups_cached": len(self._cgroups), "max_containers": self.max_containers,
                    "max_cgroups": self.max_cgroups, "sources": dict(self.sources),
                    **asdict(self.stats)}

