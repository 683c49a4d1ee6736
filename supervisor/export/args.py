"""Handler arguments: Eunomia's list form (``["path=/x.jsonl", "keep=3"]``) or a JSON object,
checked against the handler's pydantic model, with errors naming the handler and argument."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from supervisor.export.base import ExportConfigError, HandlerArgs

M = TypeVar("M", bound="HandlerOptions")


class HandlerOptions(BaseModel):
    """Base of every handler's argument model.

    In the list form, ``name=value`` sets the argument ``name``; other items fill the
    ``positional`` arguments in order, then go to the list argument ``rest`` if there is one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    positional: ClassVar[tuple[str, ...]] = ()
    rest: ClassVar[str | None] = None


def _from_list(handler: str, model: type[HandlerOptions], args: list[Any]) -> dict[str, Any]:
    fields = model.model_fields
    out: dict[str, Any] = {}
    positional = [p for p in model.positional]
    rest: list[str] = []
    for item in args:
        if not isinstance(item, str):
            raise ExportConfigError(f"export handler {handler!r}: arguments must be strings, got {item!r}")
        key, sep, value = item.partition("=")
        if sep and key in fields and key != model.rest:
            if key in out:
                raise ExportConfigError(f"export handler {handler!r}: argument {key!r} given twice")
            out[key] = value
            if key in positional:
                positional.remove(key)
        elif positional:
            out[positional.pop(0)] = item
        elif model.rest is not None:
            rest.append(item)
        else:
            accepted = ", ".join(f"{name}=…" for name in fields) or "none"
            raise ExportConfigError(f"export handler {handler!r}: unexpected argument {item!r} (accepted: {accepted})")
    if model.rest is not None and (rest or model.rest not in out):
        out[model.rest] = rest
    return out


def parse_options(handler: str, model: type[M], args: HandlerArgs | None) -> M:
    """Validate ``args`` for ``handler``; raise :class:`ExportConfigError` naming what is wrong."""
    if args is None:
        args = []
    if isinstance(args, list):
        data = _from_list(handler, model, args)
    elif isinstance(args, dict):
        data = dict(args)
    else:
        raise ExportConfigError(f"export handler {handler!r}: args must be a list of strings or an object, "
                                f"got {type(args).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "args"
            if error["type"] == "extra_forbidden":
                accepted = ", ".join(model.model_fields) or "none"
                problems.append(f"unknown argument {where!r} (accepted: {accepted})")
            else:
                problems.append(f"argument {where!r}: {error['msg']}")
        raise ExportConfigError(f"export handler {handler!r}: " + "; ".join(problems)) from None


def split_options(args: HandlerArgs | None, names: tuple[str, ...]) -> tuple[dict[str, Any], HandlerArgs]:
    """Take the ``names`` arguments (``name=value`` items or object keys) out of ``args``:
    (those, the rest). The buffered wrapper's own options are taken out this way."""
    if args is None:
        return {}, []
    if isinstance(args, dict):
        return {k: v for k, v in args.items() if k in names}, {k: v for k, v in args.items() if k not in names}
    if not isinstance(args, list):
        return {}, args
    taken: dict[str, Any] = {}
    rest: list[Any] = []
    for item in args:
        key, sep, value = item.partition("=") if isinstance(item, str) else ("", "", "")
        if sep and key in names:
            taken[key] = value
        else:
            rest.append(item)
    return taken, rest
