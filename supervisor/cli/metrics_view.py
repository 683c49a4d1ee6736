"""Print a tracer's kernel-aggregated metrics in a terminal, the way bcc tools do.

Counters become a table sorted by their change since the last print (the top N);
histograms become bcc-style log2 bar charts of the interval's counts. The worker's
samples are cumulative, so each print shows the difference from the previous one.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

from supervisor.sinks import Sample

SELF_METRICS = "eunomia_instance_"
BAR_WIDTH = 40


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class MetricsView:
    def __init__(self, top: int = 10, cumulative: bool = False) -> None:
        self.top = top
        self.cumulative = cumulative
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _delta(self, name: str, labels: dict[str, str], value: float) -> float:
        key = (name, _key(labels))
        previous = self._last.get(key, 0.0)
        self._last[key] = value
        return value if self.cumulative else value - previous

    def records(self, ts: int, samples: list[Sample]) -> list[dict[str, Any]]:
        """JSON-ready records: one per counter series, one per histogram series (with its buckets)."""
        out: list[dict[str, Any]] = []
        histograms: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
        bases = {name.removesuffix("_bucket") for name, _, _ in samples if name.endswith("_bucket")}
        derived = {base + suffix for base in bases for suffix in ("_count", "_sum")}
        for name, labels, value in samples:
            if name.startswith(SELF_METRICS):
                continue
            if name.endswith("_bucket"):
                base = name.removesuffix("_bucket")
                rest = {k: v for k, v in labels.items() if k not in ("le", "instance", "tracer")}
                hist = histograms.setdefault((base, _key(rest)), {"metric": base, "labels": rest, "buckets": []})
                if labels["le"] != "+Inf":
                    hist["buckets"].append([float(labels["le"]), self._delta(name, labels, value)])
            elif name in derived:
                continue
            else:
                rest = {k: v for k, v in labels.items() if k not in ("instance", "tracer")}
                out.append({"ts": ts, "metric": name, "labels": rest, "value": self._delta(name, labels, value)})
        for hist in histograms.values():
            cumulative = [count for _, count in sorted(hist["buckets"])]
            per_bucket = [c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative)]
            hist["buckets"] = [[le, n] for (le, _), n in zip(sorted(hist["buckets"]), per_bucket, strict=True)]
            out.append({"ts": ts, **hist})
        return out

    def render(self, ts: int, samples: list[Sample]) -> str:
        records = self.records(ts, samples)
        when = dt.datetime.fromtimestamp(ts / 1e9).strftime("%H:%M:%S")
        lines: list[str] = []
        counters: dict[str, list[dict[str, Any]]] = defaultdict(list)
        histograms: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in records:
            (histograms if "buckets" in rec else counters)[rec["metric"]].append(rec)
        for recs in histograms.values():  # the busiest series of each histogram metric
            recs.sort(key=lambda r: -sum(n for _, n in r["buckets"]))
            for rec in recs[: self.top] if self.top else recs:
                lines += self._histogram(when, rec)
        for metric, recs in counters.items():
            lines += self._table(when, metric, recs)
        return "\n".join(lines)

    def _table(self, when: str, metric: str, recs: list[dict[str, Any]]) -> list[str]:
        recs = sorted((r for r in recs if r["value"]), key=lambda r: -r["value"])
        label_names = sorted({k for r in recs for k in r["labels"]})
        shown = recs[: self.top] if self.top else recs
        lines = [f"{when} {metric}" + ("" if self.cumulative else " (since the last print)")]
        if not shown:
            return [*lines, "  (nothing)"]
        widths = [max(len(n), *(len(str(r["labels"].get(n, ""))) for r in shown)) for n in label_names]
        lines.append("  " + "  ".join(n.upper().ljust(w) for n, w in zip(label_names, widths, strict=True))
                     + "  COUNT")
        for r in shown:
            cells = [str(r["labels"].get(n, "")).ljust(w) for n, w in zip(label_names, widths, strict=True)]
            lines.append("  " + "  ".join(cells) + f"  {_count(r['value'])}")
        if len(recs) > len(shown):
            lines.append(f"  … {len(recs) - len(shown)} more")
        return lines

    @staticmethod
    def _histogram(when: str, rec: dict[str, Any]) -> list[str]:
        # a label left empty by an option that is off (runqlat without -P) says nothing
        labels = ",".join(f"{k}={v}" for k, v in sorted(rec["labels"].items()) if v != "")
        head = f"{when} {rec['metric']}" + (f" {{{labels}}}" if labels else "")
        buckets = [(le, n) for le, n in rec["buckets"]]
        while buckets and not buckets[-1][1]:
            buckets.pop()
        first = next((i for i, (_, n) in enumerate(buckets) if n), None)
        if first is None:
            return [head, "  (nothing)"]
        top = max(n for _, n in buckets)
        unit, scale = ("usecs", 1e6) if rec["metric"].endswith("_seconds") else ("value", 1.0)
        lines = [head, f"  {unit:>27} : {'count':<8} distribution"]
        for i in range(first, len(buckets)):
            le, n = buckets[i]
            low = buckets[i - 1][0] if i else 0.0
            bar = "*" * (math.ceil(n * BAR_WIDTH / top) if n else 0)
            lines.append(f"  {_fmt(low * scale):>12} -> {_fmt(le * scale):<12} : {n:<8g} |{bar:<{BAR_WIDTH}}|")
        return lines


def _count(value: float) -> str:
    """Exact integers stay exact (bytes, calls); scaled values (seconds) keep 6 digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 1 else f"{value:.3g}"
