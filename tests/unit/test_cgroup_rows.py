"""workers.cgroup_rows: who holds the fast-path rows, and counts that survive every hand-over."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from workers.args import parameters, resolve
from workers.cgroup_rows import CgroupRowSet, RowArray, RowPlanner
from workers.spec import SpecError, parse_spec

# ------------------------------------------------------------------ the planner


def test_free_rows_go_to_the_busiest_cgroups_first() -> None:
    planner = RowPlanner(capacity=2, idle=60)
    changes = planner.plan({10: 5, 20: 500, 30: 50}, now=0.0)
    assert changes.assign == [(0, 20), (1, 30)]
    assert changes.retire == []
    assert planner.active == {20: 0, 30: 1}
    assert planner.plan({10: 7}, now=1.0).assign == []  # full: 10 stays on the slow path
    assert planner.assigned == 2


def test_a_cgroup_holding_a_row_is_not_given_a_second_one() -> None:
    planner = RowPlanner(capacity=4, idle=60)
    planner.plan({10: 5}, now=0.0)
    # counts made on the slow path just before the kernel saw the new row
    assert planner.plan({10: 3}, now=1.0).assign == []
    assert planner.plan({0: 3}, now=1.0).assign == []  # cgroup id 0: no cgroup, never a row


def test_an_idle_row_retires_and_is_free_again_after_its_grace_period() -> None:
    planner = RowPlanner(capacity=1, idle=10, grace=0.5)
    planner.plan({10: 5}, now=0.0)
    planner.observe(0, 100, now=5.0)  # it counted: idle from 5.0 on
    assert planner.plan({}, now=14.0).retire == []
    planner.observe(0, 100, now=15.0)  # unchanged
    changes = planner.plan({20: 1}, now=15.0)
    assert changes.retire == [(0, 10)] and changes.assign == []  # still held until folded
    assert planner.active == {} and planner.held == [0]
    assert planner.releasable(15.2) == []
    assert planner.releasable(15.5) == [(0, 10)]
    planner.release(0)
    assert planner.plan({20: 1}, now=16.0).assign == [(0, 20)]
    assert (planner.assigned, planner.retired) == (2, 1)


def test_a_retiring_cgroup_that_is_busy_again_gets_another_row() -> None:
    planner = RowPlanner(capacity=2, idle=1)
    planner.plan({10: 5}, now=0.0)
    assert planner.plan({}, now=2.0).retire == [(0, 10)]
    assert planner.plan({10: 9}, now=2.1).assign == [(1, 10)]
    assert planner.held == [0, 1]


def test_undo_assign_frees_the_row() -> None:
    planner = RowPlanner(capacity=1, idle=60)
    planner.plan({10: 5}, now=0.0)
    planner.undo_assign(0)
    assert planner.active == {} and planner.assigned == 0
    assert planner.plan({10: 5}, now=1.0).assign == [(0, 10)]


# ------------------------------------------------------------------ the row set, on fake maps


class FakeLib:
    """bpf_lookup_batch / bpf_update_batch over a list of per-CPU cells, as the kernel does them."""

    def __init__(self, cells: int, cpus: int) -> None:
        self.cpus = cpus
        self.cells = [[0] * cpus for _ in range(cells)]

    def bpf_lookup_batch(self, fd: int, in_batch: Any, out_batch: Any, keys: Any, values: Any, count: Any) -> int:
        start = 0 if in_batch is None else in_batch._obj.value + 1  # the position is the key before
        keys_array, values_array, n = keys._obj, values._obj, count._obj
        taken = 0
        for key in range(start, min(start + n.value, len(self.cells))):
            keys_array[taken] = key
            for cpu in range(self.cpus):
                values_array[taken * self.cpus + cpu] = self.cells[key][cpu]
            taken += 1
        n.value = taken
        return 0 if start + taken < len(self.cells) else -1  # ENOENT at the end

    def bpf_update_batch(self, fd: int, keys: Any, values: Any, count: Any) -> int:
        for i in range(count._obj.value):
            key = keys._obj[i]
            self.cells[key] = [values._obj[i * self.cpus + cpu] for cpu in range(self.cpus)]
        return 0

    def count(self, row: int, column: int, columns: int, cpu: int = 0, n: int = 1) -> None:
        self.cells[row * columns + column][cpu] += n


class FakeArrayTable:
    map_fd = 3

    def __init__(self, cells: int, cpus: int) -> None:
        self.max_entries = cells
        self.total_cpu = cpus


class FakeHash(dict):  # type: ignore[type-arg]
    Key = ctypes.c_uint64
    Leaf = ctypes.c_uint32

    def __init__(self, max_entries: int) -> None:
        super().__init__()
        self.max_entries = max_entries

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key.value, value.value)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key.value)


class FakeGeneration(dict):  # type: ignore[type-arg]
    Key = ctypes.c_int
    Leaf = ctypes.c_uint64

    def __init__(self) -> None:
        super().__init__({0: ctypes.c_uint64(7)})

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(key.value)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key.value, value)


COLUMNS, ROWS, CPUS = 8, 2, 3


def make_set(idle: float = 10) -> tuple[CgroupRowSet, FakeLib, FakeHash, FakeGeneration]:
    lib = FakeLib(ROWS * COLUMNS, CPUS)
    row_map, generation = FakeHash(ROWS), FakeGeneration()
    array = RowArray(FakeArrayTable(ROWS * COLUMNS, CPUS), COLUMNS, lib=lib)
    return CgroupRowSet(row_map, generation, {"calls_total": array}, idle), lib, row_map, generation


def test_row_array_reads_a_row_summed_over_cpus_and_zeroes_it() -> None:
    lib = FakeLib(ROWS * COLUMNS, CPUS)
    array = RowArray(FakeArrayTable(ROWS * COLUMNS, CPUS), COLUMNS, lib=lib)
    lib.count(1, 0, COLUMNS, cpu=0, n=2)
    lib.count(1, 0, COLUMNS, cpu=2, n=3)
    lib.count(1, 7, COLUMNS, cpu=1, n=4)
    lib.count(0, 7, COLUMNS, cpu=1, n=100)  # another row
    assert array.read(1) == [5, 0, 0, 0, 0, 0, 0, 4]
    assert array.read(0) == [0] * 7 + [100]
    array.zero(1)
    assert array.read(1) == [0] * COLUMNS
    assert array.read(0)[7] == 100


def test_row_array_names_a_short_read() -> None:
    lib = FakeLib(ROWS * COLUMNS - 1, CPUS)  # the map is one cell short of two rows
    array = RowArray(FakeArrayTable(ROWS * COLUMNS, CPUS), COLUMNS, lib=lib)
    with pytest.raises(OSError, match="reading row 1"):
        array.read(1)


def test_assignment_writes_the_kernel_map_and_invalidates_the_memos() -> None:
    rows, _lib, row_map, generation = make_set()
    rows.maintain({111: 40}, now=0.0)
    assert dict(row_map) == {111: 0}
    assert generation[ctypes.c_int(0)].value == 8
    rows.maintain({}, now=1.0)  # nothing changed: no bump
    assert generation[ctypes.c_int(0)].value == 8
    assert rows.stats() == {"cgroup_rows_held": 1, "cgroup_rows_assigned": 1, "cgroup_rows_retired": 0,
                            "cgroup_row_counts": 0}


def test_counts_survive_retirement_and_reassignment() -> None:
    rows, lib, row_map, _generation = make_set(idle=5)
    rows.maintain({111: 40}, now=0.0)
    lib.count(0, 3, COLUMNS, cpu=1, n=10)
    rows.maintain({}, now=1.0)
    assert rows.counts("calls_total") == {(111, 3): 10}
    rows.maintain({}, now=6.0)  # idle since 1.0: retired, still counted from its cells
    assert dict(row_map) == {} and rows.planner.held == [0]
    lib.count(0, 3, COLUMNS, cpu=2, n=1)  # a program that still had the row in its memo
    assert rows.counts("calls_total") == {(111, 3): 10}
    rows.maintain({}, now=6.6)  # past the grace period: folded and zeroed
    assert rows.counts("calls_total") == {(111, 3): 11}
    assert lib.cells[3] == [0, 0, 0]
    rows.maintain({222: 1, 111: 2}, now=7.0)  # both come back
    assert dict(row_map) == {111: 0, 222: 1}
    lib.count(0, 3, COLUMNS, n=5)
    lib.count(1, 4, COLUMNS, n=6)
    rows.maintain({}, now=8.0)
    assert rows.counts("calls_total") == {(111, 3): 16, (222, 4): 6}
    assert rows.stats()["cgroup_row_counts"] == 22


# ------------------------------------------------------------------ the spec and the options

ROW_METRIC: dict[str, Any] = {
    "name": "calls_total", "type": "counter", "help": "h", "cgroup_rows": {"map": "calls_by_row", "columns": 512},
    "labels": [{"name": "cgroup_id", "type": "u64"}, {"name": "syscall", "type": "u32", "format": "syscall"}]}


def spec_with(*metrics: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "description": "d", "probes": [{"tracepoint": "raw_syscalls:sys_exit"}],
            "metrics": list(metrics)}


def test_a_row_metric_is_valid_and_brings_the_row_options() -> None:
    spec = parse_spec(spec_with(ROW_METRIC), "x")
    names = [p.name for p in parameters(spec)]
    assert "cgroup_rows" in names and "cgroup_row_idle" in names
    values = resolve(spec, ["--cgroup-rows", "4"])
    assert values["cgroup_rows"] == 4 and values["cgroup_row_idle"] == 60
    plain = parse_spec(spec_with({**ROW_METRIC, "cgroup_rows": None}), "x")
    assert "cgroup_rows" not in [p.name for p in parameters(plain)]


@pytest.mark.parametrize(("change", "message"), [
    ({"type": "histogram", "name": "calls_seconds"}, "cgroup_rows needs a counter"),
    ({"labels": [{"name": "syscall", "type": "u32"}]}, "cgroup_rows needs a counter"),
    ({"labels": [{"name": "cgroup_id", "type": "u32"}, {"name": "syscall", "type": "u32"}]},
     "cgroup_rows needs a counter"),
    ({"labels": [{"name": "cgroup_id", "type": "u64"}, {"name": "syscall", "type": "u64"}]},
     "cgroup_rows needs a counter"),
    ({"cgroup_rows": {"map": "calls_total", "columns": 8}}, "a name of its own"),
    ({"cgroup_rows": {"map": "calls_by_row", "columns": 0}}, "columns"),
    ({"cgroup_rows": {"map": "Bad-Name", "columns": 8}}, "map"),
])
def test_bad_row_metrics_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with({**ROW_METRIC, **change}), "x")
    assert message in str(info.value)


def test_row_maps_may_not_share_a_name() -> None:
    other = {**ROW_METRIC, "name": "errors_total"}
    with pytest.raises(SpecError, match="cgroup_rows maps need names of their own"):
        parse_spec(spec_with(ROW_METRIC, other), "x")
    with pytest.raises(SpecError, match="cgroup_rows maps need names of their own"):
        parse_spec(spec_with(ROW_METRIC, {**other, "cgroup_rows": {"map": "calls_total", "columns": 8}}), "x")


def test_a_tracer_may_not_declare_the_row_options_itself() -> None:
    data = spec_with(ROW_METRIC)
    data["parameters"] = [{"name": "cgroup_rows", "type": "int", "define": "MY_ROWS", "description": "d"}]
    with pytest.raises(SpecError, match="reserved"):
        parse_spec(data, "x")


def test_between_reads_rows_are_only_totalled_every_quarter_of_the_idle_time() -> None:
    rows, lib, row_map, _generation = make_set(idle=8)
    rows.maintain({111: 40}, now=0.0, full=False)  # assigned; the next look is due at 2.0
    lib.count(0, 3, COLUMNS, cpu=1, n=10)
    rows.maintain({}, now=1.0, full=False)  # not due: not even read
    assert rows.planner.rows[0].changed == 0.0
    rows.maintain({}, now=2.0, full=False)
    assert rows.planner.rows[0].changed == 2.0
    lib.count(0, 3, COLUMNS, n=1)
    rows.maintain({}, now=4.0, full=False)
    assert rows.planner.rows[0].changed == 4.0
    assert rows.counts("calls_total") == {}  # cells are read one by one only for a metrics read
    rows.maintain({}, now=4.5, full=True)
    assert rows.counts("calls_total") == {(111, 3): 11}
    for now in (6.5, 8.5, 10.5):
        rows.maintain({}, now=now, full=False)
    assert dict(row_map) == {111: 0}
    rows.maintain({}, now=12.0, full=False)  # idle since 4.0
    assert dict(row_map) == {}
    rows.maintain({}, now=12.5, full=False)
    assert rows.counts("calls_total") == {(111, 3): 11} and rows.planner.held == []
