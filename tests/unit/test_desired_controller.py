"""DesiredState against a stand-in supervisor: what is recorded, saved, restored, applied and reported."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from supervisor.arbiter import Conflict, NotFound
from supervisor.config import InstanceRequest
from supervisor.desired import DesiredState, DocumentError
from supervisor.desired.state_file import StateFile
from supervisor.export import ExportConfigError
from supervisor.states import State
from workers import args as tracer_args
from workers.catalog import Catalog, default_search_path


@dataclass
class FakeWatcher:
    id: str
    tracer: str
    args: Any
    handlers: Any
    state: State
    remove_when_stopped: bool = False


@dataclass
class FakeConfig:
    stop_timeout: float = 0.2


@dataclass
class FakeSupervisor:
    catalog: Catalog = field(default_factory=lambda: Catalog.discover(default_search_path()))
    watchers: dict[str, FakeWatcher] = field(default_factory=dict)
    config: FakeConfig = field(default_factory=FakeConfig)
    cgroup_root: Path | None = None
    claims: dict[str, str] = field(default_factory=dict)  # a file handler's path → instance
    spawned: list[str] = field(default_factory=list)

    def start_instance(self, tracer: str, args: Any = None, instance_id: str | None = None,
                       export_handlers: Any = None, start: bool = True) -> FakeWatcher:
        tracer_args.resolve(self.catalog.get(tracer).spec, args)
        instance_id = instance_id or f"{tracer}-{len(self.watchers) + 1}"
        if instance_id in self.watchers:
            raise Conflict(f"instance {instance_id!r} already exists")
        for handler in export_handlers or []:
            if handler["name"] == "file":
                path = handler["args"][0]
                if path in self.claims:
                    raise ExportConfigError(f"the file {path} is already written by {self.claims[path]!r}")
                self.claims[path] = instance_id
        watcher = FakeWatcher(instance_id, tracer, args, export_handlers, State.RUNNING if start else State.STOPPED)
        self.watchers[instance_id] = watcher
        if start:
            self.spawned.append(instance_id)
        return watcher

    def get(self, instance_id: str) -> FakeWatcher:
        if instance_id not in self.watchers:
            raise NotFound(f"no instance {instance_id!r}")
        return self.watchers[instance_id]

    def stop_instance(self, instance_id: str, remove: bool = False) -> FakeWatcher:
        watcher = self.get(instance_id)
        watcher.state = State.STOPPED  # at once: the real one passes through stopping
        if remove:
            del self.watchers[instance_id]
            self.claims = {p: i for p, i in self.claims.items() if i != instance_id}
        return watcher

    def restart_instance(self, instance_id: str) -> FakeWatcher:
        watcher = self.get(instance_id)
        watcher.state = State.RUNNING
        self.spawned.append(instance_id)
        return watcher


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def saved(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["instances"]


def test_api_changes_are_saved_and_restored(tmp_path: Path) -> None:
    path = tmp_path / "desired.json"
    sup = FakeSupervisor()
    desired = DesiredState(sup, StateFile(path))  # type: ignore[arg-type]
    desired.restore()
    assert saved(path) == []

    async def changes() -> None:
        await desired.start("opensnoop", ["-x"], "a", [{"name": "stdout", "args": []}])
        await desired.start("process", {}, None, None)
        await desired.start("opensnoop", {}, "b", None)
        await desired.stop("b")
        await desired.remove("process-2")
        with pytest.raises(NotFound):
            await desired.remove("nope")
    run(changes())
    assert saved(path) == [
        {"id": "a", "tracer": "opensnoop", "args": ["-x"], "export_handlers": [{"name": "stdout", "args": []}],
         "state": "running"},
        {"id": "b", "tracer": "opensnoop", "args": {}, "state": "stopped"}]
    again = FakeSupervisor()
    restored = DesiredState(again, StateFile(path))  # type: ignore[arg-type]
    restored.restore()
    assert {i: (w.state, w.args, w.handlers) for i, w in again.watchers.items()} == {
        "a": (State.RUNNING, ["-x"], [{"name": "stdout", "args": []}]), "b": (State.STOPPED, {}, None)}
    assert again.spawned == ["a"]
    assert restored.document() == desired.document() and restored.health()["problems"] == []


def test_a_missing_tracer_is_reported_kept_and_can_be_removed(tmp_path: Path) -> None:
    path = tmp_path / "desired.json"
    path.write_text(json.dumps({"version": 1, "instances": [
        {"id": "gone", "tracer": "nosuch", "args": {}, "state": "running"},
        {"id": "ok", "tracer": "opensnoop", "args": {}, "state": "running"}]}))
    path.chmod(0o600)
    sup = FakeSupervisor()
    desired = DesiredState(sup, StateFile(path))  # type: ignore[arg-type]
    desired.restore()
    assert list(sup.watchers) == ["ok"]
    [problem] = desired.health()["problems"]
    assert problem.startswith("instance 'gone' (tracer 'nosuch') does not exist: no tracer named 'nosuch'")
    assert [i["id"] for i in saved(path)] == ["gone", "ok"]
    run(desired.remove("gone"))
    assert desired.health()["problems"] == [] and [i["id"] for i in saved(path)] == ["ok"]


def test_apply_reports_failures_and_applies_the_rest(tmp_path: Path) -> None:
    sup = FakeSupervisor()
    desired = DesiredState(sup, StateFile(tmp_path / "desired.json"))  # type: ignore[arg-type]
    desired.restore()
    same_file = [{"name": "file", "args": [str(tmp_path / "x.jsonl")]}]
    doc = {"instances": [{"id": "a", "tracer": "opensnoop", "export_handlers": same_file},
                         {"id": "b", "tracer": "opensnoop", "export_handlers": same_file},
                         {"id": "c", "tracer": "process", "state": "stopped"}]}
    report = run(desired.apply(doc))
    assert [(r["id"], r["action"], r["state"]) for r in report["results"]] == \
        [("a", "created", "running"), ("b", "failed", None), ("c", "created", "stopped")]
    assert "is already written by 'a'" in report["results"][1]["error"]
    assert report["summary"] == {"created": 2, "failed": 1}
    assert [i["id"] for i in saved(tmp_path / "desired.json")] == ["a", "b", "c"]  # b stays desired ...
    assert "instance 'b' (tracer 'opensnoop') does not exist" in desired.health()["problems"][0]  # ... reported
    doc["instances"][1]["export_handlers"] = [{"name": "file", "args": [str(tmp_path / "y.jsonl")]}]
    doc["instances"][2]["state"] = "running"
    report = run(desired.apply(doc))
    assert [(r["id"], r["action"], r["changes"]) for r in report["results"]] == \
        [("a", "unchanged", []), ("b", "created", []), ("c", "updated", ["state"])]
    assert sup.watchers["c"].state is State.RUNNING and desired.health()["problems"] == []


def test_dry_run_and_refused_documents_change_nothing(tmp_path: Path) -> None:
    sup = FakeSupervisor()
    desired = DesiredState(sup, StateFile(tmp_path / "desired.json"),  # type: ignore[arg-type]
                           [InstanceRequest("opensnoop", instance_id="keep")])
    desired.restore()
    before = (desired.document(), dict(sup.watchers))
    report = run(desired.apply({"instances": [{"id": "new", "tracer": "process"}]}, prune=True, dry_run=True))
    assert [(r["id"], r["action"]) for r in report["results"]] == [("new", "created"), ("keep", "removed")]
    assert (desired.document(), dict(sup.watchers)) == before
    with pytest.raises(DocumentError) as info:
        run(desired.apply({"instances": [{"id": "new", "tracer": "process"},
                                         {"id": "x", "tracer": "opensnoop", "args": {"pid": -1}},
                                         {"id": "y", "tracer": "nosuch"},
                                         {"id": "z z", "tracer": "process"}]}, prune=True))
    assert [(p.index, p.instance, p.field) for p in info.value.problems] == \
        [(1, "x", "args"), (2, "y", "tracer"), (3, "z z", "id")]
    assert (desired.document(), dict(sup.watchers)) == before


def test_a_failing_save_is_reported_until_one_succeeds(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sup = FakeSupervisor()
    desired = DesiredState(sup, StateFile(blocker / "desired.json"))  # type: ignore[arg-type]
    desired.restore()
    run(desired.start("opensnoop", {}, "a", None))
    health = desired.health()
    assert health["save_errors"] == 2 and "could not be saved" in health["problems"][0]
    assert list(sup.watchers) == ["a"]  # the change itself was made
    blocker.unlink()
    run(desired.stop("a"))
    assert desired.health()["problems"] == [] and saved(blocker / "desired.json")[0]["state"] == "stopped"
