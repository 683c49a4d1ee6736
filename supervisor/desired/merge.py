"""What the agent starts with: the saved desired state, merged with the configured tracers.

Policy (docs/operations.md, "Desired state"):

* No saved state (first start, or the file was bad): the configured tracers, as before.
* Otherwise the saved state wins — instances started, stopped, removed or changed through the
  API or ``eunomiactl apply`` stay as they were left — except where the *configuration itself*
  changed since the last start (the saved state remembers it): a configured tracer that is
  new or whose entry changed is (re)created as configured and running; one that was dropped
  from the configuration is removed. A configuration that did not change touches nothing.

This is the three-way merge ``kubectl apply`` does with its last-applied configuration: an
edit of ``/etc/eunomia/eunomia.yaml`` takes effect at the next start, and a ``stop`` through
the API is not undone by a restart.
"""

from __future__ import annotations

from collections.abc import Sequence

from supervisor.config import InstanceRequest
from supervisor.desired.document import DesiredInstance, handlers_key
from supervisor.desired.state_file import SavedState


def configured_instances(requests: Sequence[InstanceRequest]) -> list[DesiredInstance]:
    """The configured tracers with their instance ids: the ``id`` given, else ``<tracer>-<n>`` numbered the
    way the supervisor numbers instances (1, 2, … over the entries without an id, skipping ids in use)."""
    taken = {r.instance_id for r in requests if r.instance_id}
    counter = 0
    out = []
    for request in requests:
        instance_id = request.instance_id
        if instance_id is None:
            counter += 1
            while f"{request.tracer}-{counter}" in taken:
                counter += 1
            instance_id = f"{request.tracer}-{counter}"
            taken.add(instance_id)
        handlers = [h.model_dump() for h in request.export_handlers] or None
        out.append(DesiredInstance(instance_id, request.tracer, request.args, handlers))
    return out


def same_entry(a: DesiredInstance, b: DesiredInstance) -> bool:
    """Two configuration entries are the same: tracer, arguments as written, handlers, state."""
    return (a.tracer, a.args, handlers_key(a.export_handlers), a.state) == \
        (b.tracer, b.args, handlers_key(b.export_handlers), b.state)


def merge(saved: SavedState | None, configured: list[DesiredInstance]) -> tuple[list[DesiredInstance], list[str]]:
    """The instances to start with, and one line per change the configuration made to the saved state."""
    if saved is None:
        return list(configured), []
    entries = {i.id: i for i in saved.instances}
    before = {i.id: i for i in saved.configured}
    now = {i.id: i for i in configured}
    notes = []
    for instance_id in before:
        if instance_id not in now and entries.pop(instance_id, None) is not None:
            notes.append(f"{instance_id}: removed (no longer in the configuration)")
    for instance_id, entry in now.items():
        old = before.get(instance_id)
        if old is not None and same_entry(old, entry):
            continue
        verb = "added" if instance_id not in entries else "replaced"
        entries[instance_id] = entry  # a replaced entry keeps its place
        notes.append(f"{instance_id}: {verb} ({'new in' if old is None else 'changed in'} the configuration)")
    return list(entries.values()), notes
