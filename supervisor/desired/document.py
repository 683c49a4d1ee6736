"""The desired-state document: which instances an agent should have, with their arguments,
export handlers and whether they run.

.. code-block:: yaml

    version: 1                       # optional
    instances:
      - id: failed-opens             # required: the instance id is the key of every change
        tracer: opensnoop
        args: {failed: true}         # or bcc-style flags: ["-x"]
        export_handlers:             # optional; left out (or null): the agent's default handlers
          - {name: file, args: [/var/log/eunomia/opens.jsonl]}
        state: running               # running (default) or stopped

The same format is what ``GET /desired`` returns, what ``PUT /desired`` and ``eunomiactl
apply`` take, and the ``instances`` of the agent's state file. Checking a document here
needs nothing but the document; :mod:`supervisor.desired.controller` then checks it against
the tracer catalog and the export handler types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.config_schema import INSTANCE_ID, ExportHandlerRequest, TracerArgs

FORMAT_VERSION = 1
RunState = Literal["running", "stopped"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstanceDoc(_Strict):
    id: Annotated[str, Field(pattern=INSTANCE_ID, description="the instance id; required")]
    tracer: Annotated[str, Field(min_length=1, max_length=64, description="tracer name, e.g. opensnoop")]
    args: TracerArgs = Field(default_factory=dict, description="{parameter: value} or bcc-style flags")
    export_handlers: list[ExportHandlerRequest] | None = Field(
        default=None, description="where its data goes; null or left out: the agent's default handlers")
    state: RunState = Field(default="running", description="running or stopped")


class DocumentModel(_Strict):
    version: Literal[1] = FORMAT_VERSION
    instances: list[InstanceDoc]


@dataclass(frozen=True, slots=True)
class DesiredInstance:
    """One instance as the operator wants it. ``export_handlers`` None: the agent's defaults."""

    id: str
    tracer: str
    args: dict[str, Any] | list[str]
    export_handlers: list[dict[str, Any]] | None = None
    state: RunState = "running"

    @property
    def running(self) -> bool:
        return self.state == "running"

    def with_state(self, state: RunState) -> DesiredInstance:
        return DesiredInstance(self.id, self.tracer, self.args, self.export_handlers, state)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tracer": self.tracer, "args": self.args}
        if self.export_handlers is not None:
            out["export_handlers"] = self.export_handlers
        out["state"] = self.state
        return out

    @classmethod
    def of(cls, doc: InstanceDoc) -> DesiredInstance:
        handlers = None if doc.export_handlers is None else [h.model_dump() for h in doc.export_handlers]
        return cls(doc.id, doc.tracer, doc.args, handlers, doc.state)


def handlers_key(handlers: list[dict[str, Any]] | None) -> list[tuple[str, Any]] | None:
    """What two handler lists are compared by: names and arguments in order; no arguments is no arguments,
    whether written [] or {}."""
    if handlers is None:
        return None
    return [(h["name"], h.get("args") or []) for h in handlers]


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with a document, naming the instance (by position and id) and the field."""

    message: str
    index: int | None = None
    instance: str | None = None
    field: str = ""

    def __str__(self) -> str:
        where = ""
        if self.index is not None:
            where = f"instances[{self.index}]" + (f" (id {self.instance!r})" if self.instance else "")
        if self.field:
            where = f"{where}.{self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.instance, "field": self.field, "message": self.message}


class DocumentError(ValueError):
    """A document that is refused as a whole: nothing of it was applied. ``valid``: the instances that were
    fine, with their positions, so that checks of their own can report all problems at once."""

    def __init__(self, problems: list[Problem], valid: list[tuple[int, DesiredInstance]] | None = None) -> None:
        self.problems = sorted(problems, key=lambda p: -1 if p.index is None else p.index)
        self.valid = valid or []
        super().__init__("; ".join(str(p) for p in self.problems))


def _field_path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problems(exc: ValidationError, index: int | None = None, instance: str | None = None) -> list[Problem]:
    problems = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        problems.append(Problem(message, index, instance, _field_path(tuple(err["loc"])) or "document"))
    return problems


def parse(data: Any) -> list[DesiredInstance]:
    """The instances of a document (already decoded from JSON or YAML); DocumentError lists every problem
    of its shape: unknown or missing keys, wrong types, bad ids, an id given twice."""
    if not isinstance(data, dict):
        raise DocumentError([Problem(f"expected a mapping with 'instances', not {type(data).__name__}",
                                     field="document")])
    try:
        DocumentModel.model_validate({**data, "instances": []})  # the top level alone
    except ValidationError as exc:
        raise DocumentError(_problems(exc)) from None
    items = data.get("instances")
    if not isinstance(items, list):
        raise DocumentError([Problem("required: a list of instances", field="instances")])
    problems: list[Problem] = []
    valid: list[tuple[int, DesiredInstance]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(Problem(f"expected a mapping {{id, tracer, args, export_handlers, state}}, not "
                                    f"{type(item).__name__}", index))
            continue
        instance = item.get("id") if isinstance(item.get("id"), str) else None
        try:
            doc = InstanceDoc.model_validate(item)
        except ValidationError as exc:
            problems += _problems(exc, index, instance)
            continue
        if doc.id in seen:
            problems.append(Problem(f"the id is already used by instances[{seen[doc.id]}]", index, doc.id, "id"))
            continue
        seen[doc.id] = index
        valid.append((index, DesiredInstance.of(doc)))
    if problems:
        raise DocumentError(problems, valid)
    return [entry for _, entry in valid]


def render(instances: list[DesiredInstance]) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "instances": [i.to_dict() for i in instances]}
