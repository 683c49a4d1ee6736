"""Adds the container columns to event rows and container labels to metric samples, before the sinks.

Runs on the supervisor's events loop, so it never calls a runtime's API: it asks the
registry, which answers from memory (or, on a miss, from the cgroup path). It asks once
per distinct cgroup id (per pid on cgroup v1-only hosts) and keeps the answers until the
registry changes or a second passes, so the cost per event is a dictionary lookup and a
``list.extend``.

A host row of a process that lives in namespaces of its own (a container run by a tool
the agent does not know, or a sandboxed service) gets that process's mnt/pid/net
namespace inodes in the namespace columns, read from ``/proc/PID/ns`` once per pid and
second; a process gone by then keeps them empty.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from supervisor.containers.info import EVENT_COLUMNS, HOST_ROW, UNKNOWN_ROW, Namespaces, Row, labels_of
from supervisor.containers.procfs import namespaces_of
from supervisor.containers.registry import ContainerRegistry

Sample = tuple[str, dict[str, str], float]


class Enricher:
    def __init__(self, registry: ContainerRegistry, refresh: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 namespaces: Callable[[int], Namespaces] = namespaces_of) -> None:
        self.registry = registry
        self.refresh = refresh
        self._clock = clock
        self._namespaces = namespaces
        # What "the host's namespaces" means: init's (the agent may run in a container with the
        # host's pids), else the agent's own when init's cannot be read (a restricted pid 1).
        host_ns = namespaces(1)
        self._host_ns = host_ns if host_ns.mnt is not None else namespaces(os.getpid())
        self._cache: dict[Any, Row] = {}
        self._host_rows: dict[Any, Row] = {}  # pid → the host row for it (with its namespaces if its own)
        self._generation = -1
        self._expires = 0.0
        self.rows_enriched = 0
        self.errors = 0  # lookups that failed unexpectedly: those rows got container_runtime=unknown
        self.last_error = ""

    def _fresh_cache(self) -> dict[Any, Row]:
        now = self._clock()
        if self.registry.generation != self._generation or now >= self._expires:
            self._cache = {}
            self._host_rows = {}
            self._generation = self.registry.generation
            self._expires = now + self.refresh
        return self._cache

    def events(self, columns: list[str], rows: list[list[Any]]) -> list[str]:
        """Append the container columns to each row (in place); return the new column list."""
        if not rows or EVENT_COLUMNS[0] in columns:
            return columns
        width = len(columns)
        cgroup_i = columns.index("cgroup_id") if "cgroup_id" in columns else None
        pid_i = columns.index("pid") if "pid" in columns else None
        key_i = pid_i if self.registry.by_pid else cgroup_i
        cache = self._fresh_cache()
        if key_i is None:  # no cgroup id (or pid) to go by
            for row in rows:
                row.extend(UNKNOWN_ROW)
        else:
            get = cache.get
            host_get = self._host_rows.get
            try:
                for row in rows:  # the hot loop: one dictionary lookup per row (two for a host process)
                    values = get(row[key_i])
                    if values is None:
                        values = self._miss(cache, row[key_i], row, cgroup_i, pid_i)
                    if values is HOST_ROW and pid_i is not None:
                        values = host_get(row[pid_i]) or self._host_row(row[pid_i])
                    row.extend(values)
            except TypeError:  # an unhashable id from a broken worker: finish the rows the careful way
                for row in rows:
                    if len(row) == width:
                        key = row[key_i] if row[key_i].__class__ is int else None
                        row.extend(get(key) or self._miss(cache, key, row, cgroup_i, pid_i))
        self.rows_enriched += len(rows)
        return [*columns, *EVENT_COLUMNS]

    def _host_row(self, pid: Any) -> Row:
        """HOST_ROW, with the process's namespaces when they are not the host's."""
        values = HOST_ROW
        if pid.__class__ is int and pid > 0:
            ns = self._namespaces(pid)
            if ns.mnt is not None and ns != self._host_ns:
                values = (*HOST_ROW[:-3], ns.mnt, ns.pid, ns.net)
        self._host_rows[pid] = values
        return values

    def _miss(self, cache: dict[Any, Row], key: Any, row: list[Any], cgroup_i: int | None,
              pid_i: int | None) -> Row:
        values = cache[key] = self._resolve(row[cgroup_i] if cgroup_i is not None else None,
                                            row[pid_i] if pid_i is not None else None)
        return values

    def samples(self, samples: list[Sample]) -> list[Sample]:
        """Series labelled with a ``cgroup_id`` get their container's labels too."""
        if not any("cgroup_id" in labels for _name, labels, _value in samples):
            return samples
        cache = self._fresh_cache()
        out: list[Sample] = []
        for name, labels, value in samples:
            raw = labels.get("cgroup_id")
            if raw is None:
                out.append((name, labels, value))
                continue
            key = ("metric", raw)
            extra = cache.get(key)
            if extra is None:
                cgroup_id = int(raw) if raw.isdigit() else None
                extra = cache[key] = tuple(labels_of(self._resolve(cgroup_id, None)).items())
            out.append((name, {**labels, **dict(extra)}, value))
        return out

    def _resolve(self, cgroup_id: Any, pid: Any) -> Row:
        try:
            return self.registry.resolve(cgroup_id, pid)
        except Exception as exc:  # never let a lookup stop the events loop
            self.errors += 1
            self.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
            return UNKNOWN_ROW
