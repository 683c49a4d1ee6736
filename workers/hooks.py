"""A tracer's optional Python processing hook (``hook:`` in tracer.yaml).

The hook runs inside the tracer's own worker process, so whatever it does — raise,
leak, crash the interpreter — stays within that worker. It may define:

* ``on_start(args: dict) -> None``: called once after the probes are attached;
* ``on_event(event: dict) -> dict | None``: return the (changed) event, or None to drop it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from types import ModuleType
from typing import Any


def read_hook(path: str) -> bytes:
    """The hook's source, read while the worker may still read the agent's private files."""
    with open(path, "rb") as fh:
        return fh.read()


def load_hook(path: str, source: bytes | None = None) -> ModuleType:
    """Run the hook module; ``source`` read earlier by :func:`read_hook` (after a privilege drop
    the worker may no longer be allowed to open the file). No byte-code cache is used or written."""
    if source is None:
        source = read_hook(path)
    spec = importlib.util.spec_from_loader("eunomia_tracer_hook", loader=None, origin=path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = path
    exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - the hook must run
    return module


class Hook:
    def __init__(self, module: ModuleType) -> None:
        self.on_start: Callable[[dict[str, Any]], None] | None = getattr(module, "on_start", None)
        self.on_event: Callable[[dict[str, Any]], dict[str, Any] | None] | None = getattr(module, "on_event", None)
        self.errors = 0
        self.last_error = ""

    def apply(self, columns: list[str], rows: list[list[Any]]) -> list[list[Any]]:
        if self.on_event is None:
            return rows
        out = []
        for row in rows:
            try:
                result = self.on_event(dict(zip(columns, row, strict=True)))
            except Exception as exc:  # a user's hook: count, remember, go on
                self.errors += 1
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                continue
            if result is not None:
                out.append([result.get(c) for c in columns])
        return out
