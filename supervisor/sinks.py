"""Where the supervisor delivers what workers send: a terminal, or an instance's export handlers
(supervisor/export/, the store among them)."""

from __future__ import annotations

from typing import Any, Protocol

Sample = tuple[str, dict[str, str], float]


class Sink(Protocol):
    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None: ...

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None: ...

    def dropped(self, instance: str) -> int: ...


def flatten_samples(raw: list[dict[str, Any]], extra: dict[str, str]) -> list[Sample]:
    """Worker metric samples → (name, labels, value) series, Prometheus-style.

    A histogram becomes ``<name>_bucket{le=...}`` (cumulative), ``<name>_count`` and
    ``<name>_sum``; every series gets the ``extra`` labels (instance, tracer).
    """
    out: list[Sample] = []
    for s in raw:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            continue
        labels = {**{str(k): str(v) for k, v in (s.get("labels") or {}).items()}, **extra}
        name = "eunomia_" + s["name"]
        if s.get("type") == "histogram":
            for le, cumulative in s.get("buckets") or []:
                out.append((name + "_bucket", {**labels, "le": repr(float(le))}, float(cumulative)))
            out.append((name + "_bucket", {**labels, "le": "+Inf"}, float(s.get("count", 0))))
            out.append((name + "_count", labels, float(s.get("count", 0))))
            out.append((name + "_sum", labels, float(s.get("sum", 0.0))))
        else:
            out.append((name, labels, float(s.get("value", 0))))
    return out
