"""The difference between an agent's desired state and a document: one step per instance."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

from supervisor.desired.document import DesiredInstance, handlers_key

Action = Literal["created", "updated", "unchanged", "removed", "kept"]
#: changes that need a new worker (and new export handlers): the instance is stopped, removed and created again
RECREATE = frozenset({"tracer", "args", "export_handlers"})


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    action: Action
    changes: list[str] = field(default_factory=list)  # fields that differ: tracer, args, export_handlers, state
    old: DesiredInstance | None = None
    new: DesiredInstance | None = None

    @property
    def recreate(self) -> bool:
        return self.action == "updated" and bool(RECREATE.intersection(self.changes))

    @property
    def tracer(self) -> str:
        entry = self.new or self.old
        assert entry is not None
        return entry.tracer


def changes(old: DesiredInstance, new: DesiredInstance,
            same_args: Callable[[DesiredInstance, DesiredInstance], bool]) -> list[str]:
    out = []
    if old.tracer != new.tracer:
        out.append("tracer")
    elif not same_args(old, new):
        out.append("args")
    if handlers_key(old.export_handlers) != handlers_key(new.export_handlers):
        out.append("export_handlers")
    if old.state != new.state:
        out.append("state")
    return out


def plan(current: list[DesiredInstance], present: Collection[str], wanted: list[DesiredInstance], prune: bool,
         same_args: Callable[[DesiredInstance, DesiredInstance], bool]) -> list[Step]:
    """Steps in the document's order, then the instances it does not list (``removed`` with ``prune``, else
    ``kept``). ``present``: ids that have an instance now; a desired one without (its start failed, or its
    tracer is gone) is ``created`` again. ``same_args`` compares arguments (by their effective values)."""
    by_id = {i.id: i for i in current}
    listed = {i.id for i in wanted}
    steps = []
    for new in wanted:
        old = by_id.get(new.id)
        if old is None or new.id not in present:
            steps.append(Step(new.id, "created", [], old, new))
            continue
        diff = changes(old, new, same_args)
        steps.append(Step(new.id, "updated" if diff else "unchanged", diff, old, new))
    for old in current:
        if old.id not in listed:
            steps.append(Step(old.id, "removed" if prune else "kept", [], old, None))
    return steps
