"""bpftrace's JSON output (``bpftrace -f json``, one object per line) → events and metric samples.

Record types used:

* ``printf`` from a probe block: an event. Its text starts with the header the worker put in
  front of every printf (:mod:`workers.bt_script`); the rest is ``key=value`` pairs or a JSON
  object whose keys are the spec's field names. Other printf output (``BEGIN``, ``interval``)
  is plain text for the worker's log.
* ``map`` (``count()``, ``sum()``, ``min()``, ``max()``, plain values), ``stats`` (``avg()``
  and ``stats()``) and ``hist`` (``hist()``, ``lhist()``): metric samples in the shape BCC
  tracers send, for the maps the spec declares. Keys of a multi-key map come joined with
  commas (``"bash,42"``): they are split into the labels from the right, so only the first
  label may itself contain a comma.
* ``lost_events``: events the perf buffer had no room for (the kernel's drops).
* ``attached_probes``: the probes are attached; ``helper_error``: a BPF helper failed.

A bucket ``{min, max, count}`` becomes ``le = (max + 1) * scale``: for ``hist()`` that is the
same power-of-two bound a BCC histogram has. The overflow bucket (no ``max``) is counted in
``count`` (``+Inf``) only. ``sum`` is estimated from bucket midpoints (``stats()`` gives it exactly).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from workers.bt_script import EVENT_START, HEADER_END

HEADER_COLUMNS = ["ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm"]  # the BCC header's column order


class OutputError(ValueError):
    """One record that does not fit the spec; counted, never fatal."""


class OutputParser:
    def __init__(self, event: dict[str, Any] | None, metrics: list[dict[str, Any]], offset_ns: int) -> None:
        self.fields: list[dict[str, Any]] = list(event["fields"]) if event else []
        self.format = event.get("format", "kv") if event else "kv"
        self.columns = HEADER_COLUMNS + [f["name"] for f in self.fields]
        self.metrics = {m["name"]: m for m in metrics}
        self.offset_ns = offset_ns  # CLOCK_MONOTONIC (bpftrace's nsecs) → ns since the epoch
        names = "|".join(re.escape(f["name"]) for f in self.fields) or "(?!)"
        self._kv = re.compile(rf"(?:^|\s+)({names})=")
        self._by_name = {f["name"]: f for f in self.fields}
        self.rows: list[list[Any]] = []  # events read since the last take_rows()
        self.samples: list[dict[str, Any]] = []  # samples read since the last take_samples()
        self.text: list[str] = []  # other printf output, for the log
        self.attached: int | None = None
        self.lost = 0  # bpftrace's lost_events: the perf buffer was full
        self.helper_errors = 0
        self.errors = 0  # records that did not fit the spec (bad lines, unexpected map shapes)
        self.last_error = ""
        self.ignored_maps: set[str] = set()  # maps printed that the spec does not declare

    # -- records ---------------------------------------------------------------------
    def feed(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            record = orjson.loads(line)
            if not isinstance(record, dict):
                raise OutputError(f"not a JSON object: {line[:200]!r}")
            self._record(record)
        except (orjson.JSONDecodeError, OutputError) as exc:
            self.errors += 1
            self.last_error = str(exc)[:300]

    def _record(self, record: dict[str, Any]) -> None:
        kind, data = record.get("type"), record.get("data")
        if kind == "printf" and isinstance(data, str):
            if data.startswith(EVENT_START):
                self.rows.append(self.event(data))
            else:
                self.text.append(data)
        elif kind in ("map", "hist", "stats") and isinstance(data, dict):
            for name, value in data.items():
                metric = self.metrics.get(name.removeprefix("@"))
                if metric is None:
                    self.ignored_maps.add(name)
                else:
                    self.samples += self.metric_samples(metric, kind, value)
        elif kind == "lost_events" and isinstance(data, dict):
            self.lost += int(data.get("events", 0))
        elif kind == "attached_probes" and isinstance(data, dict):
            self.attached = int(data.get("probes", 0))
        elif kind == "helper_error":
            self.helper_errors += 1
        elif isinstance(data, str):  # time(), print("text"), cat(), system() …
            self.text.append(data)

    def take_rows(self) -> list[list[Any]]:
        rows, self.rows = self.rows, []
        return rows

    def take_samples(self) -> list[dict[str, Any]]:
        samples, self.samples = self.samples, []
        return samples

    # -- events ----------------------------------------------------------------------
    def event(self, data: str) -> list[Any]:
        header, sep, rest = data[1:].partition(HEADER_END)
        parts = header.split(" ", 6)
        if not sep or len(parts) != 7:
            raise OutputError(f"event header not understood: {data[:200]!r}")
        try:
            ts, pid, tid, uid, gid, cgroup = (int(p) for p in parts[:6])
        except ValueError:
            raise OutputError(f"event header not understood: {data[:200]!r}") from None
        values = self._fields(rest[:-1] if rest.endswith("\n") else rest)
        return [ts + self.offset_ns, cgroup, pid, tid, uid, gid, parts[6], *values]

    def _fields(self, text: str) -> list[Any]:
        if self.format == "json":
            try:
                given = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise OutputError(f"printf text is not JSON ({exc}): {text[:200]!r}") from None
            if not isinstance(given, dict):
                raise OutputError(f"printf text is not a JSON object: {text[:200]!r}")
            unknown = sorted(set(given) - set(self._by_name))
            if unknown:
                raise OutputError(f"printf text has keys {unknown} that are not event fields")
        else:
            parts = self._kv.split(text)
            if len(parts) < 3:
                raise OutputError(f"printf text has no key=value pair of the event's fields: {text[:200]!r}")
            given = dict(zip(parts[1::2], parts[2::2], strict=True))
        return [self._value(f, given.get(f["name"])) for f in self.fields]

    @staticmethod
    def _value(field: dict[str, Any], value: Any) -> Any:
        if value is None:
            return None
        if field["type"] == "str":
            return value if isinstance(value, str) else orjson.dumps(value).decode()
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise OutputError(f"field {field['name']}: {value!r} is not an integer") from None
        if field.get("enum"):
            return {int(k): v for k, v in field["enum"].items()}.get(number, str(number))
        return number

    # -- metrics ---------------------------------------------------------------------
    def metric_samples(self, metric: dict[str, Any], kind: str, value: Any) -> list[dict[str, Any]]:
        names = [label["name"] for label in metric["labels"]]
        if names:
            if not isinstance(value, dict):
                raise OutputError(f"map @{metric['name']} has no keys, but the spec gives it labels {names}")
            series = [(self._labels(metric["name"], names, key), v) for key, v in value.items()]
        else:
            series = [({}, value)]
        return [self._sample(metric, kind, labels, v) for labels, v in series]

    @staticmethod
    def _labels(metric: str, names: list[str], key: str) -> dict[str, str]:
        parts = key.rsplit(",", len(names) - 1) if len(names) > 1 else [key]
        if len(parts) != len(names):
            raise OutputError(f"map @{metric}: key {key!r} has {len(parts)} parts, the spec names {len(names)}")
        return dict(zip(names, parts, strict=True))

    def _sample(self, metric: dict[str, Any], kind: str, labels: dict[str, str], value: Any) -> dict[str, Any]:
        name, type_, scale = metric["name"], metric["type"], float(metric.get("scale", 1.0))
        if type_ == "histogram":
            if kind == "hist" and isinstance(value, list):
                return self._histogram(name, labels, value, scale)
            if kind == "stats" and isinstance(value, dict) and "count" in value:
                return {"name": name, "type": "histogram", "labels": labels, "buckets": [],
                        "count": int(value["count"]), "sum": float(value.get("total", 0)) * scale}
            raise OutputError(f"map @{name} is a histogram in the spec: use hist(), lhist() or stats() ({kind})")
        if kind == "hist" or isinstance(value, (dict, list)) or not isinstance(value, (int, float)):
            raise OutputError(f"map @{name} is a {type_} in the spec, but bpftrace printed a {kind} of {value!r:.80}")
        return {"name": name, "type": type_, "labels": labels, "value": value if scale == 1.0 else value * scale}

    @staticmethod
    def _histogram(name: str, labels: dict[str, str], buckets: list[Any], scale: float) -> dict[str, Any]:
        out: list[list[float]] = []
        cumulative, total = 0, 0.0
        for bucket in buckets:
            if not isinstance(bucket, dict):
                raise OutputError(f"map @{name}: a histogram bucket {bucket!r:.80} is not an object")
            count = int(bucket.get("count", 0))
            low, high = bucket.get("min"), bucket.get("max")
            cumulative += count
            if high is None:  # the overflow bucket: only in count (+Inf)
                total += count * float(low or 0)
                continue
            out.append([(high + 1) * scale, cumulative])
            total += count * (float(high) if low is None else (low + high) / 2)
        return {"name": name, "type": "histogram", "labels": labels, "buckets": out, "count": cumulative,
                "sum": total * scale}
