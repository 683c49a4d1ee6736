"""The prometheus handler's arguments: which of the instance's metrics to expose, and how.

One rule per argument::

    [NEW_NAME=]METRIC[{LABEL,LABEL="value",LABEL!="value",...}]

* ``METRIC``: one of the tracer's metrics (with or without the ``eunomia_`` prefix), or a
  glob over them (``tcp_*``, ``*``).
* ``{…}``: ``label="value"`` / ``label!="value"`` keep only the matching series (a label a
  series lacks counts as ""); bare ``label`` names keep only those labels, summing the
  series that differ in the others (counters add up, histograms add bucket by bucket);
  ``{}`` sums them all. ``instance_id`` and ``tracer`` are always kept.
* ``NEW_NAME=``: export under this name (prefixed with ``eunomia_`` if it is not; counters
  get ``_total`` if they lack it). Needs a selector that names exactly one metric.
* Eunomia's form, a bare name that is none of the tracer's metrics (``eunomia_tcp_v4_counter``),
  exports the tracer's first counter under that name.

No argument at all is ``*``: every metric of the tracer, as it is.
"""

from __future__ import annotations

import bisect
import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Literal

from supervisor.export.base import ExportConfigError
from supervisor.sinks import Sample
from workers.spec import Metric

PREFIX = "eunomia_"
ALWAYS_KEPT = ("instance_id", "tracer")
#: Names of the agent's own metrics, which a rename may not take.
RESERVED_PREFIXES = ("eunomia_instance_", "eunomia_worker_", "eunomia_export_", "eunomia_store_",
                     "eunomia_agent_", "eunomia_build_info", "eunomia_bad_frames", "eunomia_unknown_instance")
_RULE = re.compile(r"^(?:(?P<new>[A-Za-z_:][A-Za-z0-9_:]*)=)?(?P<sel>[A-Za-z0-9_:*?\[\]!-]+)"
                   r"(?:\{(?P<labels>.*)\})?$", re.S)
_ITEM = re.compile(r'\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?:(?P<op>!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^,"{}]*?))?'
                   r"\s*(?:,|$)")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_GLOB_CHARS = set("*?[")

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Histogram:
    """One histogram series: cumulative counts at each finite upper bound, count and sum."""

    bounds: list[float] = field(default_factory=list)  # sorted
    cumulative: list[float] = field(default_factory=list)
    count: float = 0.0
    sum: float = 0.0

    def at(self, le: float) -> float:
        i = bisect.bisect_right(self.bounds, le)
        return self.cumulative[i - 1] if i else 0.0

    def add(self, other: Histogram) -> Histogram:
        bounds = sorted(set(self.bounds) | set(other.bounds))
        return Histogram(bounds, [self.at(b) + other.at(b) for b in bounds], self.count + other.count,
                         self.sum + other.sum)


Value = float | Histogram


@dataclass(frozen=True, slots=True)
class Family:
    """One exported metric family: its name (without ``_total`` for counters), type, help and series."""

    name: str
    type: Literal["counter", "histogram"]
    help: str
    series: dict[Labels, Value]


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    source: str  # the tracer's metric, with the eunomia_ prefix
    name: str  # the exported family name (a counter's without _total)
    type: Literal["counter", "histogram"]
    help: str
    matchers: tuple[tuple[str, str, str], ...] = ()  # (label, "=" or "!=", value)
    keep: tuple[str, ...] | None = None

    def describe(self) -> str:
        exported = self.name + "_total" if self.type == "counter" else self.name
        parts = [f"{self.source} -> {exported}"]
        if self.matchers:
            parts.append("where " + ", ".join(f'{lbl}{op}"{v}"' for lbl, op, v in self.matchers))
        if self.keep is not None:
            parts.append("by " + ", ".join(self.keep) if self.keep else "summed")
        return " ".join(parts)

    def apply(self, series: dict[Labels, Value]) -> dict[Labels, Value]:
        out: dict[Labels, Value] = {}
        for labels, value in series.items():
            as_dict = dict(labels)
            if not all((as_dict.get(lbl, "") == v) == (op == "=") for lbl, op, v in self.matchers):
                continue
            if self.keep is not None:
                wanted = set(self.keep) | set(ALWAYS_KEPT)
                labels = tuple(kv for kv in labels if kv[0] in wanted)
            previous = out.get(labels)
            if previous is None:
                out[labels] = value
            elif isinstance(previous, Histogram) and isinstance(value, Histogram):
                out[labels] = previous.add(value)
            elif isinstance(previous, float) and isinstance(value, float):
                out[labels] = previous + value
        return out


def _error(arg: str, message: str) -> ExportConfigError:
    return ExportConfigError(f"export handler 'prometheus': argument {arg!r}: {message}")


def _labels(arg: str, body: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    matchers: list[tuple[str, str, str]] = []
    keep: list[str] = []
    pos = 0
    while pos < len(body):
        m = _ITEM.match(body, pos)
        if m is None or m.end() == pos:
            raise _error(arg, f"cannot read the labels from {body[pos:]!r} "
                              '(expected label, label="value" or label!="value", comma-separated)')
        label, op, value = m.group("label"), m.group("op"), m.group("value")
        if op is None:
            keep.append(label)
        else:
            if value.startswith('"'):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise _error(arg, f"bad quoted value {value}") from None
            matchers.append((label, op, value.strip()))
        pos = m.end()
    return matchers, keep


def _exported_name(arg: str, new: str, metric: Metric) -> str:
    name = new if new.startswith(PREFIX) else PREFIX + new
    if not _NAME.match(name):
        raise _error(arg, f"{name!r} is not a valid metric name")
    if name.startswith(RESERVED_PREFIXES):
        raise _error(arg, f"{name!r} is reserved for the agent's own metrics")
    if name.endswith(("_bucket", "_count", "_sum", "_created")):
        raise _error(arg, f"{name!r} ends like a histogram's series; choose another name")
    if metric.type == "histogram" and name.endswith("_total"):
        raise _error(arg, f"{name!r}: only counters end in _total, and {metric.name} is a histogram")
    return name.removesuffix("_total") if metric.type == "counter" else name


def parse_rules(metrics: list[Metric], args: list[str]) -> list[Rule]:
    """The rules of ``args`` against the tracer's ``metrics``; errors name the argument."""
    by_name = {m.name: m for m in metrics}
    rules: list[Rule] = []
    for arg in args or ["*"]:
        m = _RULE.match(arg.strip())
        if m is None:
            raise _error(arg, "expected [NEW_NAME=]METRIC[{labels}], e.g. tcp_connects_total{dport} "
                              'or tcp_v4_connects_total=tcp_connects_total{family="4"}')
        new, selector, body = m.group("new"), m.group("sel"), m.group("labels")
        pattern = selector.removeprefix(PREFIX)
        matched = [by_name[n] for n in by_name if fnmatch.fnmatchcase(n, pattern)]
        if not matched and new is None and body is None and not _GLOB_CHARS & set(selector):
            counters = [mt for mt in metrics if mt.type == "counter"]
            if not counters:
                raise _error(arg, f"is none of the tracer's metrics ({', '.join(by_name) or 'it has none'}) and "
                                  "the tracer has no counter to export under that name")
            new, matched = selector, counters[:1]  # Eunomia's form: the main counter under this name
        if not matched:
            raise _error(arg, f"matches none of the tracer's metrics ({', '.join(by_name) or 'it has none'})")
        if new is not None and len(matched) > 1:
            raise _error(arg, f"a new name needs exactly one metric; {selector!r} matches "
                              f"{', '.join(mt.name for mt in matched)}")
        matchers, keep = _labels(arg, body) if body is not None else ([], [])
        sum_all = body is not None and not body.strip()  # "{}": no label but instance_id and tracer
        known = {lbl.name for mt in matched for lbl in mt.labels}
        for label in [*(lbl for lbl, _, _ in matchers), *keep]:
            if label in ALWAYS_KEPT:
                raise _error(arg, f"{label!r} is always kept and cannot be selected")
            if label not in known:
                raise _error(arg, f"no label {label!r} (labels: {', '.join(sorted(known)) or 'none'})")
        for metric in matched:
            if new is not None:
                name = _exported_name(arg, new, metric)
            else:
                name = PREFIX + (metric.name.removesuffix("_total") if metric.type == "counter" else metric.name)
            help_text = metric.help if new is None else f"{metric.help} (exported from {PREFIX}{metric.name})"
            own = {x.name for x in metric.labels}
            kept = tuple(lbl for lbl in keep if lbl in own) if keep or sum_all else None
            rules.append(Rule(arg, PREFIX + metric.name, name, metric.type, help_text, tuple(matchers), kept))
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.name in seen:
            raise _error(rule.text, f"exports {rule.name} again (already exported by {seen[rule.name]!r}); "
                                    "rename one of them")
        seen[rule.name] = rule.text
    return rules


def _key(labels: dict[str, str]) -> Labels:
    return tuple(sorted(("instance_id" if k == "instance" else k, v) for k, v in labels.items()))


def series_by_metric(metrics: list[Metric], samples: list[Sample]) -> dict[str, dict[Labels, Value]]:
    """Flattened samples (``supervisor.sinks.flatten_samples``) back into series per tracer metric:
    counters as values, histograms rebuilt from their ``_bucket``/``_count``/``_sum`` series.
    The ``instance`` label becomes ``instance_id`` (Prometheus keeps ``instance`` for the target)."""
    counters = {PREFIX + m.name for m in metrics if m.type == "counter"}
    histograms = {PREFIX + m.name for m in metrics if m.type == "histogram"}
    out: dict[str, dict[Labels, Value]] = {}
    for name, labels, value in samples:
        if name in counters:
            out.setdefault(name, {})[_key(labels)] = float(value)
            continue
        base, _, part = name.rpartition("_")
        if base not in histograms or part not in ("bucket", "count", "sum"):
            continue
        if part == "bucket":
            rest = {k: v for k, v in labels.items() if k != "le"}
            hist = out.setdefault(base, {}).setdefault(_key(rest), Histogram())
            assert isinstance(hist, Histogram)
            le = labels.get("le", "+Inf")
            if le != "+Inf":
                bound = float(le)
                i = bisect.bisect_left(hist.bounds, bound)
                hist.bounds.insert(i, bound)
                hist.cumulative.insert(i, float(value))
        else:
            hist = out.setdefault(base, {}).setdefault(_key(labels), Histogram())
            assert isinstance(hist, Histogram)
            if part == "count":
                hist.count = float(value)
            else:
                hist.sum = float(value)
    return out
