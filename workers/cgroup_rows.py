"""Cgroup rows: the fast path of per-cgroup counters (``cgroup_rows`` in a metric's spec).

A cgroup that holds a row counts in a per-CPU array at ``row * columns + column``: an
array lookup on every event instead of a hash lookup keyed by (cgroup, column), which is
what made per-cgroup syscall counting dearer than bcc's per-syscall one. The kernel finds
a task's row through the per-CPU cgroup memo (eunomia.h); this module decides who holds
the rows:

* Every :data:`MAINTAIN_INTERVAL` the worker drains the metrics' hash maps (the slow path)
  and gives the free rows to the cgroups that counted most there.
* A row whose counts have not moved for ``idle`` seconds is retired: its entry leaves the
  kernel's row map, so the cgroup falls back to the hash map. After ``grace`` seconds, when
  no program can still be incrementing the row, its counts move into the worker's totals
  and its cells are zeroed for the next cgroup.

Every change to the kernel's row map is followed by a bump of the memo generation
(``eunomia_cgroup_moves``), so no CPU keeps using a row it has lost. Counts are never
lost in the hand-over: whatever a cgroup counted in the hash map, its live row or a
retired row adds up under the same labels.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAINTAIN_INTERVAL = 1.0  # seconds between two rounds of draining, assigning and retiring
RETIRE_GRACE = 0.5  # seconds between leaving the kernel's row map and being folded and zeroed


@dataclass(slots=True)
class Row:
    cgroup_id: int
    changed: float  # when its counts last moved (or when it was assigned)
    activity: int = -1  # the sum of its cells at the last read
    retired_at: float | None = None


@dataclass(slots=True)
class RowChanges:
    assign: list[tuple[int, int]] = field(default_factory=list)  # (row, cgroup id) to insert
    retire: list[tuple[int, int]] = field(default_factory=list)  # (row, cgroup id) to delete

    def __bool__(self) -> bool:
        return bool(self.assign or self.retire)


class RowPlanner:
    """Which cgroup holds which row, and when rows change hands. No kernel I/O (unit tested)."""

    def __init__(self, capacity: int, idle: float, grace: float = RETIRE_GRACE) -> None:
        self.capacity = capacity
        self.idle = idle
        self.grace = grace
        self.rows: dict[int, Row] = {}
        self._free = list(range(capacity - 1, -1, -1))  # pop() hands out row 0 first
        self.assigned = 0  # rows handed out since the start
        self.retired = 0

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def held(self) -> list[int]:
        """Rows whose cells hold counts not yet folded into the totals (active or retiring)."""
        return sorted(self.rows)

    @property
    def active(self) -> dict[int, int]:
        """cgroup id → row, for the rows the kernel currently uses."""
        return {row.cgroup_id: n for n, row in self.rows.items() if row.retired_at is None}

    def releasable(self, now: float) -> list[tuple[int, int]]:
        """Retired rows past their grace period: fold their cells, zero them, then :meth:`release`."""
        return [(n, row.cgroup_id) for n, row in sorted(self.rows.items())
                if row.retired_at is not None and now - row.retired_at >= self.grace]

    def release(self, row: int) -> None:
        del self.rows[row]
        self._free.append(row)

    def observe(self, row: int, activity: int, now: float) -> None:
        """The sum of an active row's cells at this read."""
        held = self.rows.get(row)
        if held is not None and held.retired_at is None and activity != held.activity:
            held.activity = activity
            held.changed = now

    def plan(self, demand: dict[int, int], now: float) -> RowChanges:
        """Retire idle rows, then give free rows to the busiest cgroups of ``demand``
        (cgroup id → what it counted on the slow path since the last round)."""
        changes = RowChanges()
        for n, row in sorted(self.rows.items()):
            if row.retired_at is None and now - row.changed >= self.idle:
                row.retired_at = now
                changes.retire.append((n, row.cgroup_id))
                self.retired += 1
        holding = self.active
        for cgroup_id, _count in sorted(demand.items(), key=lambda item: (-item[1], item[0])):
            if not self._free:
                break
            if cgroup_id in holding or cgroup_id == 0:
                continue
            n = self._free.pop()
            self.rows[n] = Row(cgroup_id=cgroup_id, changed=now)
            changes.assign.append((n, cgroup_id))
            self.assigned += 1
        return changes

    def undo_assign(self, row: int) -> None:
        """The kernel refused the entry (it should not): the row is free again."""
        self.rows.pop(row, None)
        self._free.append(row)
        self.assigned -= 1


class RowArray:
    """A per-CPU u64 array of rows × columns cells, read and zeroed one row at a time with
    the batch commands (one system call per row instead of one per cell)."""

    def __init__(self, table: Any, columns: int, lib: Any = None) -> None:
        if lib is None:
            from bcc.libbcc import lib as bcc_lib

            lib = bcc_lib
        self.lib = lib
        self.fd = table.map_fd
        self.columns = columns
        self.cpus = int(getattr(table, "total_cpu", 1))
        self.rows = table.max_entries // columns
        self._keys = (ctypes.c_uint32 * columns)()
        self._values = (ctypes.c_uint64 * (columns * self.cpus))()
        self._zeros = (ctypes.c_uint64 * (columns * self.cpus))()

    def read(self, row: int) -> list[int]:
        """The row's cells, summed over the CPUs."""
        self.read_raw(row)
        values = memoryview(self._values).cast("B").cast("Q")
        if self.cpus == 1:
            return list(values)
        # cells are cell-major (every CPU's value of cell 0, then of cell 1 …): one strided view per CPU
        return list(map(sum, zip(*(values[cpu::self.cpus] for cpu in range(self.cpus)), strict=True)))

    def read_raw(self, row: int) -> None:
        """Fetch the row's per-CPU values into the buffer with one system call."""
        # The batch's position is the key before the first one returned (none: from key 0).
        previous = ctypes.c_uint32(row * self.columns - 1) if row else None
        out = ctypes.c_uint32(0)
        count = ctypes.c_uint32(self.columns)
        res = self.lib.bpf_lookup_batch(self.fd, ctypes.byref(previous) if previous is not None else None,
                                        ctypes.byref(out), ctypes.byref(self._keys), ctypes.byref(self._values),
                                        ctypes.byref(count))
        if count.value != self.columns or self._keys[0] != row * self.columns:
            raise OSError(ctypes.get_errno(), f"reading row {row} of a cgroup row array failed (res {res}, "
                                              f"{count.value} cells from {self._keys[0]})")

    def total(self, row: int) -> int:
        """The sum of the row's cells over every CPU: enough to see whether it counted."""
        self.read_raw(row)
        return sum(memoryview(self._values).cast("B").cast("Q"))

    def zero(self, row: int) -> None:
        for i in range(self.columns):
            self._keys[i] = row * self.columns + i
        count = ctypes.c_uint32(self.columns)
        if self.lib.bpf_update_batch(self.fd, ctypes.byref(self._keys), ctypes.byref(self._zeros),
                                     ctypes.byref(count)) != 0:
            raise OSError(ctypes.get_errno(), f"zeroing row {row} of a cgroup row array failed")


def nonzero(cells: Iterable[int]) -> dict[int, int]:
    """column → count for the cells that counted."""
    return {column: count for column, count in enumerate(cells) if count}


class CgroupRowSet:
    """The rows of one tracer: its kernel row map, the memo generation, and one
    :class:`RowArray` per ``cgroup_rows`` metric, run by a :class:`RowPlanner`."""

    def __init__(self, row_map: Any, generation: Any, arrays: dict[str, RowArray], idle: float) -> None:
        self.row_map = row_map
        self.generation = generation
        self.arrays = arrays
        self.planner = RowPlanner(min(row_map.max_entries, *(a.rows for a in arrays.values())), idle)
        # counts of retired rows, kept here once their cells are zeroed: metric → cgroup → column → count
        self.folded: dict[str, dict[int, dict[int, int]]] = {name: {} for name in arrays}
        self._live: dict[str, dict[int, list[int]]] = {name: {} for name in arrays}  # metric → row → cells
        self._next_activity = 0.0

    @property
    def has_free_rows(self) -> bool:
        return self.planner.free > 0

    def maintain(self, demand: dict[int, int], now: float, full: bool = True) -> None:
        """Fold the rows past their grace period, look at the held rows, retire and assign.

        ``full`` reads every held row cell by cell (for a metrics read); otherwise the rows'
        totals are read, and only every quarter of the idle time, which is all the retirement
        needs (summing rows × columns × CPUs values every second would cost on large hosts).
        """
        planner = self.planner
        for row, cgroup_id in planner.releasable(now):
            for name, array in self.arrays.items():
                folded = self.folded[name].setdefault(cgroup_id, {})
                for column, count in nonzero(array.read(row)).items():
                    folded[column] = folded.get(column, 0) + count
                array.zero(row)
                self._live[name].pop(row, None)
            planner.release(row)
        if full or now >= self._next_activity:
            self._next_activity = now + max(MAINTAIN_INTERVAL, planner.idle / 4)
            for row in planner.held:
                activity = 0
                for name, array in self.arrays.items():
                    if full:
                        cells = array.read(row)
                        self._live[name][row] = cells
                        activity += sum(cells)
                    else:
                        activity += array.total(row)
                planner.observe(row, activity, now)
        changes = planner.plan(demand, now)
        if not changes:
            return
        for _row, cgroup_id in changes.retire:
            try:
                del self.row_map[self.row_map.Key(cgroup_id)]
            except KeyError:
                pass
        for row, cgroup_id in changes.assign:
            try:
                self.row_map[self.row_map.Key(cgroup_id)] = self.row_map.Leaf(row)
            except Exception:  # the map is sized for every row: this is not expected
                planner.undo_assign(row)
                continue
            for name in self.arrays:
                self._live[name][row] = []
        self._bump_generation()

    def _bump_generation(self) -> None:
        """Invalidate every CPU's memo (eunomia.h). A concurrent bump by the kernel may be
        overwritten: either way the value differs from every memo taken before this change."""
        key = self.generation.Key(0)
        self.generation[key] = self.generation.Leaf(self.generation[key].value + 1)

    def counts(self, name: str) -> dict[tuple[int, int], int]:
        """(cgroup id, column) → count: the retired rows' folded counts plus the held rows' cells."""
        out: dict[tuple[int, int], int] = {}
        for cgroup_id, columns in self.folded[name].items():
            for column, count in columns.items():
                out[(cgroup_id, column)] = count
        for row, cells in self._live[name].items():
            held = self.planner.rows.get(row)
            if held is None:
                continue
            for column, count in nonzero(cells).items():
                key = (held.cgroup_id, column)
                out[key] = out.get(key, 0) + count
        return out

    def stats(self) -> dict[str, int]:
        on_rows = sum(sum(self.counts(name).values()) for name in self.arrays)  # as of the last metrics read
        return {"cgroup_rows_held": len(self.planner.active), "cgroup_rows_assigned": self.planner.assigned,
                "cgroup_rows_retired": self.planner.retired, "cgroup_row_counts": on_rows}
