"""The desired-state document, its diff, the merge with the configured tracers and the state file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from supervisor.config import DEFAULT_TRACERS, InstanceRequest
from supervisor.config_schema import ExportHandlerRequest
from supervisor.desired.document import DesiredInstance, DocumentError, parse, render
from supervisor.desired.merge import configured_instances, merge
from supervisor.desired.plan import plan
from supervisor.desired.state_file import SavedState, StateFile

FILE = [{"name": "file", "args": ["/tmp/x.jsonl"]}]


def inst(id_: str, tracer: str = "opensnoop", args: dict | list | None = None, handlers: list | None = None,
         state: str = "running") -> DesiredInstance:
    return DesiredInstance(id_, tracer, args if args is not None else {}, handlers, state)  # type: ignore[arg-type]


def raw_equal(a: DesiredInstance, b: DesiredInstance) -> bool:
    return a.args == b.args


# -- the document ---------------------------------------------------------------------------


def test_parse_and_render_round_trip() -> None:
    doc = {"version": 1, "instances": [
        {"id": "failed-opens", "tracer": "opensnoop", "args": {"failed": True}, "export_handlers": FILE},
        {"id": "exec", "tracer": "process", "args": ["-p", "42"], "state": "stopped"},
        {"id": "plain", "tracer": "tcpconnect"},
    ]}
    parsed = parse(doc)
    assert parsed == [inst("failed-opens", args={"failed": True}, handlers=FILE),
                      inst("exec", "process", ["-p", "42"], state="stopped"), inst("plain", "tcpconnect")]
    assert render(parsed) == {"version": 1, "instances": [
        {"id": "failed-opens", "tracer": "opensnoop", "args": {"failed": True}, "export_handlers": FILE,
         "state": "running"},
        {"id": "exec", "tracer": "process", "args": ["-p", "42"], "state": "stopped"},
        {"id": "plain", "tracer": "tcpconnect", "args": {}, "state": "running"}]}
    assert parse(render(parsed)) == parsed
    assert parse({"instances": [{"id": "a", "tracer": "x", "export_handlers": []}]})[0].export_handlers == []


@pytest.mark.parametrize(("doc", "expected"), [
    ([], ["document: expected a mapping with 'instances', not list"]),
    ({}, ["instances: required: a list of instances"]),
    ({"instances": [], "colour": 1}, ["colour: Extra inputs are not permitted"]),
    ({"instances": [], "version": 2}, ["version: Input should be 1"]),
    ({"instances": [{"tracer": "opensnoop"}]}, ["instances[0].id: Field required"]),
    ({"instances": [{"id": "a", "tracer": "x"}, {"id": "b b", "tracer": "x"}]},
     ["instances[1] (id 'b b').id: String should match pattern"]),
    ({"instances": [{"id": "a", "tracer": "x", "state": "paused"}]},
     ["instances[0] (id 'a').state: Input should be 'running' or 'stopped'"]),
    ({"instances": [{"id": "a", "tracer": "x", "args": ["-p", 42]}]},
     ["instances[0] (id 'a').args: bcc-style flags must all be text"]),
    ({"instances": [{"id": "a", "tracer": "x", "export_handlers": [{"args": []}]}]},
     ["instances[0] (id 'a').export_handlers[0].name: Field required"]),
    ({"instances": [{"id": "a", "tracer": "x"}, {"id": "a", "tracer": "y"}]},
     ["instances[1] (id 'a').id: the id is already used by instances[0]"]),
    ({"instances": [{"id": "a", "tracer": "x", "colour": 1}, "nope"]},
     ["instances[0] (id 'a').colour: Extra inputs are not permitted",
      "instances[1]: expected a mapping {id, tracer, args, export_handlers, state}, not str"]),
])
def test_bad_documents_name_the_instance_and_field(doc: object, expected: list[str]) -> None:
    with pytest.raises(DocumentError) as info:
        parse(doc)
    lines = [str(p) for p in info.value.problems]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_a_refused_document_keeps_its_valid_instances_for_further_checks() -> None:
    with pytest.raises(DocumentError) as info:
        parse({"instances": [{"id": "a", "tracer": "x"}, {"id": "b", "tracer": ""}, {"id": "c", "tracer": "z"}]})
    assert [(i, e.id) for i, e in info.value.valid] == [(0, "a"), (2, "c")]


# -- the diff ---------------------------------------------------------------------------------


def test_plan_actions_and_changes() -> None:
    current = [inst("same"), inst("args", args={"pid": 1}), inst("handlers"), inst("stop-me"),
               inst("start-me", state="stopped"), inst("tracer"), inst("orphan"), inst("unlisted")]
    wanted = [inst("same"), inst("args", args={"pid": 2}), inst("handlers", handlers=FILE),
              inst("stop-me", state="stopped"), inst("start-me"), inst("tracer", "process"), inst("orphan"),
              inst("new", state="stopped")]
    present = {"same", "args", "handlers", "stop-me", "start-me", "tracer", "unlisted"}
    steps = plan(current, present, wanted, prune=False, same_args=raw_equal)
    got = [(s.id, s.action, s.changes, s.recreate) for s in steps]
    assert got == [("same", "unchanged", [], False), ("args", "updated", ["args"], True),
                   ("handlers", "updated", ["export_handlers"], True), ("stop-me", "updated", ["state"], False),
                   ("start-me", "updated", ["state"], False), ("tracer", "updated", ["tracer"], True),
                   ("orphan", "created", [], False), ("new", "created", [], False),
                   ("unlisted", "kept", [], False)]
    pruned = plan(current, present, wanted, prune=True, same_args=raw_equal)
    assert (pruned[-1].id, pruned[-1].action) == ("unlisted", "removed")


def test_plan_handler_lists_compare_by_name_and_arguments() -> None:
    default, none, sqlite = inst("a"), inst("a", handlers=[]), inst("a", handlers=[{"name": "sqlite", "args": {}}])
    assert plan([default], {"a"}, [none], False, raw_equal)[0].changes == ["export_handlers"]
    assert plan([sqlite], {"a"}, [inst("a", handlers=[{"name": "sqlite", "args": []}])], False,
                raw_equal)[0].action == "unchanged"


# -- the merge with the configured tracers -------------------------------------------------------


def test_configured_ids_are_numbered_like_the_supervisor_numbers_them() -> None:
    assert [i.id for i in configured_instances(DEFAULT_TRACERS)] == ["process-1", "opensnoop-2", "tcpconnect-3"]
    requests = (InstanceRequest("opensnoop", instance_id="opensnoop-1"), InstanceRequest("opensnoop"),
                InstanceRequest("process", {"pid": 1},
                                export_handlers=(ExportHandlerRequest(name="stdout"),)))
    got = configured_instances(requests)
    assert [i.id for i in got] == ["opensnoop-1", "opensnoop-2", "process-3"]
    assert got[0].export_handlers is None and got[2].export_handlers == [{"name": "stdout", "args": {}}]


def test_first_start_takes_the_configuration() -> None:
    configured = [inst("process-1", "process")]
    assert merge(None, configured) == (configured, [])


def test_saved_state_wins_while_the_configuration_does_not_change() -> None:
    configured = [inst("process-1", "process"), inst("opensnoop-2")]
    saved = SavedState([inst("opensnoop-2", state="stopped"), inst("mine", "tcpconnect")], configured)
    assert merge(saved, configured) == ([inst("opensnoop-2", state="stopped"), inst("mine", "tcpconnect")], [])


def test_a_changed_configuration_adds_replaces_and_removes_only_its_own_entries() -> None:
    before = [inst("process-1", "process"), inst("opensnoop-2"), inst("tcpconnect-3", "tcpconnect")]
    saved = SavedState([inst("opensnoop-2", args={"pid": 7}, state="stopped"), inst("tcpconnect-3", "tcpconnect"),
                        inst("mine", "process")], before)
    now = [inst("opensnoop-2", args={"failed": True}), inst("tcpconnect-3", "tcpconnect"), inst("new", "files")]
    entries, notes = merge(saved, now)
    assert entries == [inst("opensnoop-2", args={"failed": True}), inst("tcpconnect-3", "tcpconnect"),
                       inst("mine", "process"), inst("new", "files")]
    assert notes == ["opensnoop-2: replaced (changed in the configuration)", "new: added (new in the configuration)"]
    # process-1 was removed through the API before; dropping it from the configuration notes nothing
    saved.instances.append(inst("process-1", "process"))
    assert merge(saved, now)[1][0] == "process-1: removed (no longer in the configuration)"


# -- the state file -----------------------------------------------------------------------------


def test_state_file_round_trip_mode_and_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "lib" / "desired.json"
    state = SavedState([inst("a", args=["-x"], handlers=FILE), inst("b", "process", state="stopped")],
                       [inst("process-1", "process")])
    sf = StateFile(path, clock=lambda: 0.0)
    assert sf.load().saved is None and sf.load().problem is None  # no file yet: first start
    sf.save(state)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["saved_at"] == "1970-01-01T00:00:00Z"
    loaded = sf.load()
    assert loaded.problem is None and loaded.saved == state
    state.instances.pop()
    sf.save(state)
    assert sf.load().saved == state
    assert sorted(p.name for p in path.parent.iterdir()) == ["desired.json"]  # no temporary file left
    (path.parent / ".desired.json.tmp-4242").write_bytes(b"{")  # a save that a crash cut short
    assert sf.load().saved == state
    assert sorted(p.name for p in path.parent.iterdir()) == ["desired.json"]


@pytest.mark.parametrize(("content", "reason"), [
    (b"{\"version\": 1, \"instances\": [", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[]", "expected a JSON object, not list"),
    (b'{"version": 9, "instances": []}', "format version 9"),
    (b'{"version": 1, "instances": [{"id": "a"}]}', "not a valid desired state: instances[0] (id 'a').tracer"),
    (b'{"version": 1, "instances": [], "extra": 1}', "unknown key(s) ['extra']"),
])
def test_a_bad_state_file_is_moved_aside_and_reported(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "desired.json"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    sf = StateFile(path, clock=lambda: 86400.0)
    result = sf.load()
    kept = tmp_path / "desired.json.corrupt-19700102T000000"
    assert result.saved is None and result.moved_to == kept
    assert reason in result.problem and str(kept) in result.problem
    assert kept.read_bytes() == content and not path.exists()
    path.write_bytes(content)
    assert sf.load().moved_to == tmp_path / "desired.json.corrupt-19700102T000000-2"  # never overwrites a copy
    sf.save(SavedState([]))
    assert sf.load().saved == SavedState([])


def test_a_state_file_others_may_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "desired.json"
    StateFile(path).save(SavedState([inst("a")]))
    os.chmod(path, 0o666)
    result = StateFile(path).load()
    assert result.saved is None and "mode 0666 lets others change it" in result.problem
