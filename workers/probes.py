"""Probe kinds, perf event names and ``{parameter}`` placeholders (stdlib only: used by the worker too)."""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")

#: perf_event names → (perf type, config), as in perf(1): software clocks and basic hardware counters.
PERF_EVENTS: dict[str, tuple[int, int]] = {
    "cpu-clock": (1, 0), "task-clock": (1, 1), "page-faults": (1, 2), "context-switches": (1, 3),
    "cpu-migrations": (1, 4), "cpu-cycles": (0, 0), "instructions": (0, 1), "cache-misses": (0, 3),
}


def placeholders(text: str | int | None) -> list[str]:
    """Parameter names referenced as ``{name}`` in a probe target."""
    return _PLACEHOLDER.findall(text) if isinstance(text, str) else []


def fill(text: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
