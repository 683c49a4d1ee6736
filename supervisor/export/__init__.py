"""Export handlers: where each tracer instance's events and metrics go (see docs/export.md)."""

from supervisor.export.base import ExportConfigError, Handler, HandlerContext, HandlerSpec, HandlerStats
from supervisor.export.manager import Exports
from supervisor.export.registry import handler_types, register

__all__ = ["ExportConfigError", "Exports", "Handler", "HandlerContext", "HandlerSpec", "HandlerStats",
           "handler_types", "register"]
