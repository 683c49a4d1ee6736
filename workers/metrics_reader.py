"""Read the kernel's aggregation maps into metric samples (map name = metric name).

Counters: key = the labels, value = u64. Log2 histograms: key = the labels followed
by a u32 slot, value = u64; slot ``s`` holds values below ``2**s`` (bcc's
``bpf_log2l``), which becomes the Prometheus bucket ``le = 2**s * scale``.

A ``drain`` metric is cleared in the kernel at every read; the running totals live
here, so what is exported stays a monotonic counter.

A counter with ``cgroup_rows`` has a fast path (workers/cgroup_rows.py): its hash map is
drained by :meth:`MetricsReader.maintain` every second, which also hands rows to the
busiest cgroups; its value is the drained totals plus what the rows counted.

Stack maps cannot be cleared at every read: a program may hold a stack id outside the
metric maps (memleak keeps it with each live block, offcputime while a thread sleeps).
So a stack map is emptied only once it is more than half full, keeping its capacity for
new stacks; ids held across that moment show as "[stack evicted]". (BCC's own
``StackTrace.clear()`` does nothing, so entries are deleted one by one here.)
"""

from __future__ import annotations

import ctypes
import time
from collections import defaultdict
from typing import Any

from workers.cgroup_rows import CgroupRowSet, RowArray
from workers.ctypes_layout import Layout, layout
from workers.decoder import _FAMILY
from workers.loader import LoadError
from workers.stacks import StackResolver

Labels = tuple[tuple[str, str], ...]


def syscall_name(number: int) -> str:
    """The syscall's name on this architecture, from BCC's table."""
    from bcc.syscall import syscall_name as bcc_syscall_name

    return bcc_syscall_name(number).decode()


def _label_value(value: Any, label: dict[str, Any]) -> str:
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode("utf-8", "replace")
    if label.get("format") == "family":
        value = _FAMILY.get(value, value)
    elif label.get("format") == "syscall":
        return syscall_name(value)
    if label.get("enum"):
        return {int(k): v for k, v in label["enum"].items()}.get(value, str(value))
    return str(value)


def _scaled(count: int, metric: dict[str, Any]) -> int | float:
    """A counter's value in the metric's unit; exact integers stay integers."""
    scale = float(metric.get("scale", 1.0))
    return count if scale == 1.0 else count * scale


def _count(leaf: Any) -> int:
    """A map value: a ctypes u64, a plain int (batch reads), or one u64 per CPU."""
    if isinstance(leaf, int):
        return leaf
    if hasattr(leaf, "value"):
        return int(leaf.value)
    return sum(int(v) for v in leaf)


class MetricsReader:
    def __init__(self, bpf: Any, metrics: list[dict[str, Any]], row_idle: float = 60.0,
                 clock: Any = time.monotonic) -> None:
        self.bpf = bpf
        self.clock = clock
        self.stacks = StackResolver(bpf)
        self._maps: list[tuple[dict[str, Any], Any, Layout]] = []
        self._stack_maps: set[str] = set()
        self.stack_map_clears = 0  # how many times a stack map was emptied (its held ids lost)
        self._totals: dict[str, dict[Labels, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
        for metric in metrics:
            name = metric["name"]
            try:
                table = bpf.get_table(name)
            except KeyError:
                raise LoadError("spec", f"metric {name}: the program has no map named {name}") from None
            fields = [(lbl["name"], lbl["type"]) for lbl in metric["labels"]]
            if metric["type"] == "histogram":
                fields.append(("__slot", "u32"))
            key_layout = layout(fields)
            key_size = ctypes.sizeof(table.Key)
            # a per-CPU map's value is an array with one u64 per CPU
            leaf_size = ctypes.sizeof(table.Leaf) // getattr(table.Leaf, "_length_", 1)
            if key_size != key_layout.size:
                raise LoadError("spec", f"metric {name}: map key is {key_size} bytes but its labels make "
                                        f"{key_layout.size} (check the label types and order)")
            if leaf_size != 8:
                raise LoadError("spec", f"metric {name}: map values must be u64 counts, not {leaf_size} bytes")
            for lbl in metric["labels"]:
                if lbl.get("stack_map"):
                    try:
                        bpf.get_table(lbl["stack_map"])
                    except KeyError:
                        raise LoadError("spec", f"metric {name}: no stack map named {lbl['stack_map']}") from None
                    self._stack_maps.add(lbl["stack_map"])
            self._maps.append((metric, table, key_layout))
        self.rows = self._row_set(metrics, row_idle)

    def _row_set(self, metrics: list[dict[str, Any]], idle: float) -> CgroupRowSet | None:
        arrays = {}
        for metric in metrics:
            rows = metric.get("cgroup_rows")
            if not rows:
                continue
            try:
                table = self.bpf.get_table(rows["map"])
            except KeyError:
                raise LoadError("spec", f"metric {metric['name']}: the program has no map named {rows['map']} "
                                        "(its cgroup_rows map)") from None
            single = ctypes.sizeof(table.Leaf) // getattr(table.Leaf, "_length_", 1)
            if not hasattr(table, "total_cpu") or single != 8 or table.max_entries % rows["columns"]:
                raise LoadError("spec", f"metric {metric['name']}: {rows['map']} must be a BPF_PERCPU_ARRAY of u64 "
                                        f"with rows × {rows['columns']} cells (EUNOMIA_ROW_CELLS)")
            arrays[metric["name"]] = RowArray(table, rows["columns"])
        if not arrays:
            return None
        try:
            row_map = self.bpf.get_table("eunomia_cgroup_rows")
        except KeyError:
            return None  # --cgroup-rows 0: every cgroup counts in the hash maps
        return CgroupRowSet(row_map, self.bpf.get_table("eunomia_cgroup_moves"), arrays, idle)

    def maintain(self, full: bool = False) -> None:
        """Drain the hash maps of ``cgroup_rows`` metrics and let the rows change hands
        (every second; ``full`` for a metrics read). The drain is skipped between reads
        while no row is free: the cgroups it would find could not get one anyway."""
        demand: dict[int, int] = defaultdict(int)
        if full or (self.rows is not None and self.rows.has_free_rows):
            for metric, table, key_layout in self._maps:
                if metric.get("cgroup_rows"):
                    totals = self._totals[metric["name"]]
                    for key, leaf in table.items_lookup_and_delete_batch():
                        raw = key_layout.codec.unpack(bytes(key))
                        count = _count(leaf)
                        labels = self._labels(metric, raw)
                        totals[labels][0] = totals[labels].get(0, 0) + count
                        demand[int(raw[0])] += count
        if self.rows is not None:
            self.rows.maintain(demand, self.clock(), full=full)

    def _row_series(self, metric: dict[str, Any]) -> dict[Labels, dict[int, int]]:
        series: dict[Labels, dict[int, int]] = defaultdict(dict)
        for labels, slots in self._totals[metric["name"]].items():
            series[labels][0] = slots.get(0, 0)
        if self.rows is not None:
            for (cgroup_id, column), count in self.rows.counts(metric["name"]).items():
                labels = self._labels(metric, (cgroup_id, column))
                series[labels][0] = series[labels].get(0, 0) + count
        return series

    def stats(self) -> dict[str, int]:
        out = {"stack_map_clears": self.stack_map_clears}
        if self.rows is not None:
            out.update(self.rows.stats())
        return out

    def _labels(self, metric: dict[str, Any], raw: tuple[Any, ...]) -> Labels:
        specs = metric["labels"]
        by_name = {lbl["name"]: value for lbl, value in zip(specs, raw, strict=False)}
        out = []
        for lbl, value in zip(specs, raw, strict=False):
            if lbl.get("stack"):
                pid = int(by_name[lbl["pid_label"]]) if lbl.get("pid_label") else -1
                text = self.stacks.folded(lbl["stack_map"], int(value), lbl["stack"], pid)
            else:
                text = _label_value(value, lbl)
            out.append((lbl["name"], text))
        return tuple(out)

    def _collect(self, metric: dict[str, Any], table: Any, key_layout: Layout) -> dict[Labels, dict[int, int]]:
        """{labels: {slot: count}}; counters use slot 0."""
        current: dict[Labels, dict[int, int]] = defaultdict(dict)
        histogram = metric["type"] == "histogram"
        drain = bool(metric.get("drain"))
        # Draining reads and deletes each batch in one kernel operation: an increment lands
        # before or after it, never in between and lost.
        entries = table.items_lookup_and_delete_batch() if drain else table.items()
        for key, leaf in entries:
            raw = key_layout.codec.unpack(bytes(key))
            labels = self._labels(metric, raw[:-1] if histogram else raw)
            slot = raw[-1] if histogram else 0
            bucket = current[labels]
            bucket[slot] = bucket.get(slot, 0) + _count(leaf)
        if not drain:
            return current
        totals = self._totals[metric["name"]]
        for labels, slots in current.items():
            for slot, count in slots.items():
                totals[labels][slot] = totals[labels].get(slot, 0) + count
        return totals

    def read(self) -> list[dict[str, Any]]:
        samples: list[dict[str, Any]] = []
        if any(metric.get("cgroup_rows") for metric, _, _ in self._maps):
            self.maintain(full=True)
        for metric, table, key_layout in self._maps:
            if metric.get("cgroup_rows"):
                series = self._row_series(metric)
            else:
                series = self._collect(metric, table, key_layout)
            for labels, slots in series.items():
                if metric["type"] == "counter":
                    samples.append({"name": metric["name"], "type": "counter", "labels": dict(labels),
                                    "value": _scaled(slots.get(0, 0), metric)})
                else:
                    samples.append(self._histogram(metric, dict(labels), slots))
        for stack_map in self._stack_maps:
            self._reclaim(self.bpf.get_table(stack_map))
        return samples

    def _reclaim(self, table: Any) -> None:
        """Empty a stack map that is more than half full (see the module's docstring)."""
        ids = list(table.keys())
        if len(ids) * 2 <= table.max_entries:
            return
        for key in ids:
            try:
                del table[key]
            except KeyError:
                pass
        self.stack_map_clears += 1

    @staticmethod
    def _histogram(metric: dict[str, Any], labels: dict[str, str], slots: dict[int, int]) -> dict[str, Any]:
        scale = float(metric.get("scale", 1.0))
        cumulative, buckets, total = 0, [], 0.0
        for slot in range(max(slots) + 1):
            count = slots.get(slot, 0)
            cumulative += count
            upper = float(2**slot)
            buckets.append([upper * scale, cumulative])
            total += count * (upper * 0.75 if slot else 0.0) * scale  # midpoint estimate of the bucket
        return {"name": metric["name"], "type": "histogram", "labels": labels, "buckets": buckets,
                "count": cumulative, "sum": total}
