"""What every export handler is: the Sink protocol plus ``close()`` and ``stats``.

A handler receives one instance's data: ``events`` (a batch of rows with their column
names, as the worker sent them) and ``samples`` (``(name, labels, value)`` series as
:func:`supervisor.sinks.flatten_samples` makes them, or the supervisor's self-metrics).
``dropped(instance)`` is the number of *events* it lost for that instance; it is added
to the instance's drops under the handler's ``hop`` (``store`` for sqlite, ``exporter``
for the rest).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from supervisor.sinks import Sample

if TYPE_CHECKING:
    from supervisor.store.writer import StoreWriter
    from workers.catalog import Tracer

HandlerArgs = list[str] | dict[str, Any]


class ExportConfigError(ValueError):
    """A handler that cannot be configured as asked; the message names the handler and argument."""


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One entry of an instance's ``export_handlers``: ``{"name": "file", "args": ["/var/log/x.jsonl"]}``."""

    name: str
    args: HandlerArgs = field(default_factory=list)

    @classmethod
    def of(cls, obj: HandlerSpec | dict[str, Any] | str) -> HandlerSpec:
        """From a spec, a ``{"name", "args"}`` object (API, config file) or a bare name."""
        if isinstance(obj, HandlerSpec):
            return obj
        if isinstance(obj, str):
            return cls(obj)
        if not isinstance(obj, dict):
            raise ExportConfigError(f"export handler: expected an object with 'name' and 'args', got {obj!r}")
        extra = set(obj) - {"name", "args"}
        if extra:
            raise ExportConfigError(f"export handler: unknown key(s) {sorted(extra)} (expected 'name' and 'args')")
        name, args = obj.get("name"), obj.get("args", [])
        if not isinstance(name, str) or not name:
            raise ExportConfigError(f"export handler: 'name' must be a non-empty string, got {name!r}")
        if not isinstance(args, list | dict):
            raise ExportConfigError(f"export handler {name!r}: args must be a list of strings or an object")
        return cls(name, args)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "args": self.args}


@dataclass(slots=True)
class HandlerStats:
    """What a handler did for its instance. Records are event rows plus samples."""

    sent: int = 0  # records delivered to the destination
    dropped: int = 0  # events lost (buffer full, or gave up at shutdown)
    dropped_samples: int = 0
    errors: int = 0  # failed deliveries (each retried)
    last_error: str = ""
    queued: int = 0  # records waiting for delivery
    detail: dict[str, Any] = field(default_factory=dict)  # handler-specific facts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Handler(Protocol):
    """An export handler. Methods are called on the supervisor's loop unless the handler
    type is registered ``buffered`` (then on its own thread, where they may block or raise:
    a call that raises is retried with the same arguments).

    Optional attributes: ``claim`` (str: a destination only one handler may own, such as
    ``"the file /x"``), ``takes_events`` / ``takes_samples`` (False: the buffered wrapper
    does not queue that kind for it)."""

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None: ...

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None: ...

    def dropped(self, instance: str) -> int: ...

    def close(self) -> None: ...

    @property
    def stats(self) -> HandlerStats: ...


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler registered ``with_context`` gets besides its arguments."""

    instance: str
    tracer: Tracer
    store: StoreWriter | None = None
