"""Export handler types by name.

Built-in handlers are registered below exactly as a plugin would be; other packages add
theirs through the ``eunomia.export_handlers`` entry-point group (``name = "module:attr"``),
the way datasette finds its plugins. A target is imported only when a handler of that type
is first used, so one whose library is missing fails that request alone, with the reason.

A target is called as ``target(args)``, or ``target(args, context)`` when registered
``with_context``; ``args`` is the ``args`` of the request (a list of strings or an object)
without the buffered wrapper's options. It returns a :class:`~supervisor.export.base.Handler`
and raises :class:`~supervisor.export.base.ExportConfigError` for bad arguments.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

from supervisor.export.args import parse_options, split_options
from supervisor.export.base import ExportConfigError, Handler, HandlerContext, HandlerSpec
from supervisor.export.buffered import BUFFER_OPTION_NAMES, BufferOptions

log = logging.getLogger("eunomia.export")
ENTRY_POINT_GROUP = "eunomia.export_handlers"


@dataclass(frozen=True, slots=True)
class HandlerType:
    name: str
    target: str | Callable[..., Handler]  # a callable, or "package.module:Attr[.attr]"
    with_context: bool = False
    buffered: bool = True  # run behind a bounded queue and a thread of its own, with retries
    hop: Literal["store", "exporter"] = "exporter"
    description: str = ""

    def factory(self) -> Callable[..., Handler]:
        if callable(self.target):
            return self.target
        module, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def availability(self) -> str | None:
        """None when the handler can be created, else why not."""
        try:
            self.factory()
        except (ImportError, AttributeError) as exc:
            return f"{exc.__class__.__name__}: {exc}"
        return None


_REGISTRY: dict[str, HandlerType] = {}
_entry_points_loaded = False


def register(name: str, target: str | Callable[..., Handler], *, with_context: bool = False, buffered: bool = True,
             hop: Literal["store", "exporter"] = "exporter", description: str = "") -> None:
    """Make ``name`` usable in ``export_handlers``; a later registration of the name replaces it."""
    _REGISTRY[name] = HandlerType(name, target, with_context, buffered, hop, description)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            log.warning("export handler %r from %s ignored: the name is taken", ep.name, ep.value)
            continue
        register(ep.name, ep.value, description=f"plugin {ep.value}")


def handler_types() -> list[HandlerType]:
    _load_entry_points()
    return sorted(_REGISTRY.values(), key=lambda t: t.name)


def get(name: str) -> HandlerType:
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ExportConfigError(f"export handler {name!r}: no such handler "
                                f"(available: {', '.join(sorted(_REGISTRY))})") from None


def build(spec: HandlerSpec, context: HandlerContext) -> tuple[Handler, HandlerType, BufferOptions | None]:
    """The (unwrapped) handler of ``spec``, its type, and the wrapper's options if it is buffered."""
    kind = get(spec.name)
    try:
        factory = kind.factory()
    except (ImportError, AttributeError) as exc:
        raise ExportConfigError(f"export handler {spec.name!r} is not available: {exc}") from None
    args = spec.args
    buffer_options = None
    if kind.buffered:
        own, args = split_options(args, BUFFER_OPTION_NAMES)
        buffer_options = parse_options(spec.name, BufferOptions, own)
    try:
        handler = factory(args, context) if kind.with_context else factory(args)
    except ExportConfigError:
        raise
    except (ValueError, TypeError) as exc:  # a plugin's own complaint about its arguments
        raise ExportConfigError(f"export handler {spec.name!r}: {exc}") from None
    return handler, kind, buffer_options


# -- the built-in handlers --------------------------------------------------------------
register("sqlite", "supervisor.export.sqlite:SqliteHandler.create", with_context=True, buffered=False, hop="store",
         description="the embedded SQLite store (the default): GET /events, GET /samples, eunomiactl query")
register("stdout", "supervisor.export.stdout:StdoutHandler.create",
         description="JSON lines of events and samples on the agent's standard output")
register("file", "supervisor.export.file:FileHandler.create",
         description="JSON lines in a file rotated by size: path, max_bytes, keep")
register("prometheus", "supervisor.export.prometheus:PrometheusHandler.create", with_context=True, buffered=False,
         description="the latest values of selected metrics on GET /metrics")
register("otlp", "supervisor.export.otlp_plugin:OtlpExport.create", buffered=False, hop="exporter",
         description="OpenTelemetry over OTLP/HTTP: events as log records, metrics as cumulative sums and "
                     "histograms (docs/otlp.md)")
