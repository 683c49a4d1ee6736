"""Check a tracer's metrics against Prometheus naming: base units, suffixes, reserved and
high-cardinality labels. ``python -m supervisor.export.naming`` lists what every tracer in the
search path gets wrong (the names come from the tracers' maps; the exporter does not rename them).
"""

from __future__ import annotations

import sys

from workers.spec import TracerSpec

#: Name parts that are not base units, and what Prometheus wants instead.
NON_BASE_UNITS = {"nanoseconds": "seconds", "microseconds": "seconds", "milliseconds": "seconds", "ns": "seconds",
                  "us": "seconds", "usecs": "seconds", "ms": "seconds", "msecs": "seconds", "minutes": "seconds",
                  "hours": "seconds", "kb": "bytes", "kib": "bytes", "kbytes": "bytes", "mb": "bytes", "mib": "bytes",
                  "kilobytes": "bytes", "megabytes": "bytes", "percent": "ratio"}
UNITS = ("seconds", "bytes", "ratio", "pages", "packets", "segments", "celsius", "volts", "joules", "hertz")
#: Labels Prometheus or the exporter sets itself.
RESERVED_LABELS = {"instance": "Prometheus sets it to the scrape target (ours is exported as instance_id)",
                   "job": "Prometheus sets it to the scrape job", "instance_id": "the exporter sets it",
                   "tracer": "the exporter sets it", "le": "histogram buckets use it"}
HIGH_CARDINALITY = {"pid", "tid", "path", "laddr", "raddr", "saddr", "daddr", "lport", "sport", "fd"}


def naming_problems(spec: TracerSpec) -> list[str]:
    problems = []
    for metric in spec.metrics:
        name = metric.name
        words = name.split("_")
        if metric.type == "counter" and not name.endswith("_total"):
            problems.append(f"{name}: a counter's name ends in _total")
        if metric.type == "histogram" and words[-1] in ("total", "count", "sum", "bucket"):
            problems.append(f"{name}: a histogram's name must not end in _{words[-1]}")
        for word in words:
            if word in NON_BASE_UNITS:
                problems.append(f"{name}: '{word}' is not a base unit; use {NON_BASE_UNITS[word]} "
                                f"(scale the values instead)")
        unit_word = words[-2] if metric.type == "counter" and len(words) > 1 else words[-1]
        if metric.type == "histogram" and unit_word not in UNITS and unit_word not in NON_BASE_UNITS:
            problems.append(f"{name}: a histogram's name should end in its unit (_seconds, _bytes …)")
        many = []
        for label in metric.labels:
            if label.name in RESERVED_LABELS:
                problems.append(f"{name}: label '{label.name}' clashes: {RESERVED_LABELS[label.name]}")
            elif label.name in HIGH_CARDINALITY or label.stack:
                many.append(label.name)
        if many:
            kept = [lbl.name for lbl in metric.labels if lbl.name not in many and lbl.name not in RESERVED_LABELS]
            problems.append(f"{name}: label(s) {', '.join(repr(x) for x in many)} have a high cardinality for "
                            f"Prometheus; sum them away in the prometheus handler: {name}{{{','.join(kept)}}}")
    return problems


def main() -> int:
    from workers.catalog import Catalog, default_search_path

    catalog = Catalog.discover(default_search_path())
    found = 0
    for tracer in sorted(catalog.tracers.values(), key=lambda t: t.name):
        for problem in naming_problems(tracer.spec):
            print(f"{tracer.name}: {problem}")
            found += 1
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
