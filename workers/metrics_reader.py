"""Read the kernel's aggregation maps into metric samples (map name = metric name).

Counters: key = the labels, value = u64. Log2 histograms: key = the labels followed
by a u32 slot, value = u64; slot ``s`` holds values below ``2**s`` (bcc's
``bpf_log2l``), which becomes the Prometheus bucket ``le = 2**s * scale``.
"""

from __future__ import annotations

import ctypes
from typing import Any

from workers.ctypes_layout import Layout, layout
from workers.decoder import _FAMILY
from workers.loader import LoadError


def _label_value(value: Any, label: dict[str, Any]) -> str:
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode("utf-8", "replace")
    if label.get("format") == "family":
        value = _FAMILY.get(value, value)
    if label.get("enum"):
        return {int(k): v for k, v in label["enum"].items()}.get(value, str(value))
    return str(value)


class MetricsReader:
    def __init__(self, bpf: Any, metrics: list[dict[str, Any]]) -> None:
        self._maps: list[tuple[dict[str, Any], Any, Layout]] = []
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
            key_size, leaf_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
            if key_size != key_layout.size:
                raise LoadError("spec", f"metric {name}: map key is {key_size} bytes but its labels make "
                                        f"{key_layout.size} (check the label types and order)")
            if leaf_size != 8:
                raise LoadError("spec", f"metric {name}: map values must be u64 counts, not {leaf_size} bytes")
            self._maps.append((metric, table, key_layout))

    def read(self) -> list[dict[str, Any]]:
        samples: list[dict[str, Any]] = []
        for metric, table, key_layout in self._maps:
            label_specs = metric["labels"]
            if metric["type"] == "counter":
                for key, leaf in table.items():
                    values = key_layout.codec.unpack(bytes(key))
                    labels = {lbl["name"]: _label_value(v, lbl) for lbl, v in zip(label_specs, values, strict=True)}
                    samples.append({"name": metric["name"], "type": "counter", "labels": labels,
                                    "value": int(leaf.value)})
            else:
                samples.extend(self._histograms(metric, table, key_layout))
        return samples

    def _histograms(self, metric: dict[str, Any], table: Any, key_layout: Layout) -> list[dict[str, Any]]:
        label_specs = metric["labels"]
        series: dict[tuple[Any, ...], dict[int, int]] = {}
        for key, leaf in table.items():
            *label_values, slot = key_layout.codec.unpack(bytes(key))
            series.setdefault(tuple(label_values), {})[slot] = int(leaf.value)
        out = []
        scale = float(metric.get("scale", 1.0))
        for label_values, slots in series.items():
            labels = {lbl["name"]: _label_value(v, lbl) for lbl, v in zip(label_specs, label_values, strict=True)}
            cumulative, buckets, total = 0, [], 0.0
            for slot in range(max(slots) + 1):
                count = slots.get(slot, 0)
                cumulative += count
                upper = float(2**slot)
                buckets.append([upper * scale, cumulative])
                total += count * (upper * 0.75 if slot else 0.0) * scale  # midpoint estimate of the bucket
            out.append({"name": metric["name"], "type": "histogram", "labels": labels,
                        "buckets": buckets, "count": cumulative, "sum": total})
        return out
