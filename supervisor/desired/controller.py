"""The agent's desired state: what instances it should have, kept in step with the supervisor,
saved after every change, restored at start, and changed as a whole by a document (``PUT /desired``).

Every change of instances that should outlive the agent goes through :class:`DesiredState`
(the API's start, stop, restart and delete do): it asks the supervisor, records the result
and saves it before the request is answered, so a change that was answered survives a
``kill -9`` a moment later. The supervisor alone (its crash restarts, the stops of its own
shutdown) never changes the desired state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.arbiter import NotFound, Supervisor
from supervisor.config import AgentConfig, InstanceRequest
from supervisor.containers.cgroup_filter import CgroupFilter
from supervisor.desired.document import DesiredInstance, DocumentError, Problem, RunState, parse, render
from supervisor.desired.merge import configured_instances, merge
from supervisor.desired.plan import Step, plan
from supervisor.desired.state_file import STATE_FILE_NAME, LoadResult, SavedState, StateFile
from supervisor.export import ExportConfigError
from supervisor.export import registry as export_registry
from supervisor.states import State
from supervisor.watcher import Watcher
from workers import args as tracer_args
from workers.args import ArgsError

log = logging.getLogger("eunomia.desired")
STOP_GRACE = 2.0  # seconds beyond the supervisor's stop timeout (then SIGKILL) to wait for an instance to go


def state_file_path(config: AgentConfig) -> Path | None:
    """``state_file`` from the config, else ``desired.json`` next to the store; None without a store."""
    if config.state_file is not None:
        return config.state_file
    return config.db_path.parent / STATE_FILE_NAME if config.db_path is not None else None


@dataclass(slots=True)
class SaveStats:
    saves: int = 0
    errors: int = 0
    last_error: str | None = None
    failing: bool = False  # the latest save failed


class DesiredState:
    def __init__(self, supervisor: Supervisor, state_file: StateFile | None = None,
                 configured: Sequence[InstanceRequest] = ()) -> None:
        self.supervisor = supervisor
        self.file = state_file
        self.configured = configured_instances(configured)
        self.entries: dict[str, DesiredInstance] = {}
        self.errors: dict[str, str] = {}  # instance id → why the desired instance does not exist
        self.save_stats = SaveStats()
        self._save_lock = asyncio.Lock()
        self._apply_lock = asyncio.Lock()
        loaded = state_file.load() if state_file is not None else LoadResult(None)
        self.file_problem = loaded.problem
        if loaded.problem:
            log.error("desired state not restored: %s; starting from the configuration", loaded.problem)
        self.initial, self.config_changes = merge(loaded.saved, self.configured)
        self.restored = loaded.saved is not None
        for note in self.config_changes:
            log.info("desired state: %s", note)

    @classmethod
    def for_agent(cls, supervisor: Supervisor, config: AgentConfig) -> DesiredState:
        path = state_file_path(config)
        return cls(supervisor, StateFile(path) if path is not None else None, config.default_tracers)

    # -- start: the supervisor's startup hook ------------------------------------------
    def restore(self) -> None:
        """Create every desired instance (stopped ones stopped) and save: runs on the loop as the supervisor
        starts. An instance that cannot be created (its tracer is gone, its arguments no longer fit) is
        reported and kept in the desired state; the agent starts anyway."""
        for entry in self.initial:
            self.entries[entry.id] = entry
            self._create(entry)
        if self.restored and self.file is not None:
            log.info("desired state: %d instance(s) restored from %s", len(self.entries), self.file.path)
        self._save_sync()

    def _create(self, entry: DesiredInstance) -> Watcher | None:
        try:
            watcher = self.supervisor.start_instance(entry.tracer, entry.args, entry.id, entry.export_handlers,
                                                     start=entry.running)
        except KeyError as exc:  # the tracer
            self.errors[entry.id] = str(exc.args[0])
        except Exception as exc:  # ArgsError, ExportConfigError, Conflict, OSError …: this instance only
            self.errors[entry.id] = str(exc) or exc.__class__.__name__
        else:
            self.errors.pop(entry.id, None)
            return watcher
        log.error("instance %s (tracer %s) not started: %s", entry.id, entry.tracer, self.errors[entry.id])
        return None

    # -- single changes (the API's start, stop, restart, delete) ----------------------
    async def start(self, tracer: str, args: dict[str, Any] | list[str] | None, instance_id: str | None,
                    export_handlers: list[dict[str, Any]] | None) -> Watcher:
        watcher = self.supervisor.start_instance(tracer, args, instance_id, export_handlers)
        self.entries[watcher.id] = DesiredInstance(watcher.id, tracer, args if args is not None else {},
                                                   export_handlers)
        self.errors.pop(watcher.id, None)
        await self.save()
        return watcher

    async def stop(self, instance_id: str) -> Watcher:
        watcher = self.supervisor.stop_instance(instance_id)
        self._set_state(instance_id, "stopped")
        await self.save()
        return watcher

    async def restart(self, instance_id: str) -> Watcher:
        watcher = self.supervisor.restart_instance(instance_id)
        self._set_state(instance_id, "running")
        await self.save()
        return watcher

    async def remove(self, instance_id: str) -> None:
        """Stop and forget the instance, or a desired one that has none (its tracer is gone). Raises NotFound."""
        if instance_id in self.supervisor.watchers:
            self.supervisor.stop_instance(instance_id, remove=True)
        elif instance_id not in self.entries:
            raise NotFound(f"no instance {instance_id!r}")
        self.entries.pop(instance_id, None)
        self.errors.pop(instance_id, None)
        await self.save()

    def _set_state(self, instance_id: str, state: RunState) -> None:
        entry = self.entries.get(instance_id)
        if entry is not None:
            self.entries[instance_id] = entry.with_state(state)

    # -- the whole document -----------------------------------------------------------
    def document(self) -> dict[str, Any]:
        return render(list(self.entries.values()))

    async def apply(self, data: Any, prune: bool = False, dry_run: bool = False) -> dict[str, Any]:
        """Make the desired state what ``data`` says. Every instance is checked first; a document with any
        problem raises DocumentError and changes nothing. ``prune``: remove the instances it does not list."""
        try:
            wanted = parse(data)
        except DocumentError as exc:  # report what the catalog says of the others too
            raise DocumentError(exc.problems + self.problems_of(exc.valid)) from None
        problems = self.problems_of(list(enumerate(wanted)))
        if problems:
            raise DocumentError(problems)
        async with self._apply_lock:
            present = {i for i, w in self.supervisor.watchers.items() if not w.remove_when_stopped}
            steps = plan(list(self.entries.values()), present, wanted, prune, self._same_args)
            if dry_run:
                results = [self._result(step, step.action) for step in steps]
            else:
                results = await self._execute(steps)
                await self.save()
        summary: dict[str, int] = {}
        for result in results:
            summary[result["action"]] = summary.get(result["action"], 0) + 1
        return {"dry_run": dry_run, "prune": prune, "results": results, "summary": summary}

    def problems_of(self, wanted: list[tuple[int, DesiredInstance]]) -> list[Problem]:
        """What can be known without starting anything: the tracer, its arguments (and the cgroup a --cgroup
        names), the export handler types. ``wanted``: instances with their positions in the document."""
        problems = []
        for index, entry in wanted:
            def problem(message: str, field: str, index: int = index, entry: DesiredInstance = entry) -> None:
                problems.append(Problem(message, index, entry.id, field))
            try:
                tracer = self.supervisor.catalog.get(entry.tracer)
            except KeyError as exc:
                problem(str(exc.args[0]), "tracer")
            else:
                try:
                    values = tracer_args.resolve(tracer.spec, entry.args)
                    cgroup_filter = CgroupFilter.from_values(values)
                    if cgroup_filter is not None and cgroup_filter.cgroup:
                        cgroup_filter.resolve([], self.supervisor.cgroup_root)
                except ArgsError as exc:
                    problem(str(exc), "args")
            for j, handler in enumerate(entry.export_handlers or []):
                try:
                    reason = export_registry.get(handler["name"]).availability()
                except ExportConfigError as exc:
                    problem(str(exc), f"export_handlers[{j}].name")
                    continue
                if reason is not None:
                    problem(f"export handler {handler['name']!r} is not available: {reason}",
                            f"export_handlers[{j}].name")
        return problems

    def _same_args(self, old: DesiredInstance, new: DesiredInstance) -> bool:
        """By effective values: ``["-x"]`` and ``{failed: true}`` are the same arguments."""
        try:
            spec = self.supervisor.catalog.get(new.tracer).spec
            return tracer_args.resolve(spec, old.args) == tracer_args.resolve(spec, new.args)
        except (KeyError, ArgsError):
            return old.args == new.args

    async def _execute(self, steps: list[Step]) -> list[dict[str, Any]]:
        outcome: dict[str, tuple[str, str | None]] = {}  # id → (action, error)
        going = [s for s in steps if s.action == "removed" or s.recreate]
        for step in going:  # first, so that what they hold (a file, a metric name) is free for the new ones
            if step.id in self.supervisor.watchers:
                self.supervisor.stop_instance(step.id, remove=True)
            if step.action == "removed":
                self.entries.pop(step.id, None)
                self.errors.pop(step.id, None)
        await self._wait(lambda: not any(s.id in self.supervisor.watchers for s in going))
        for step in steps:
            try:
                outcome[step.id] = await self._carry_out(step)
            except Exception as exc:  # never let one instance stop the others
                log.exception("apply: %s", step.id)
                outcome[step.id] = ("failed", str(exc) or exc.__class__.__name__)
        return [self._result(step, *outcome[step.id]) for step in steps]

    async def _carry_out(self, step: Step) -> tuple[str, str | None]:
        new = step.new
        if step.action in ("unchanged", "kept", "removed") or new is None:
            return step.action, None
        if step.action == "created" or step.recreate:
            await self._wait(lambda: step.id not in self.supervisor.watchers)  # one being removed
            if step.id in self.supervisor.watchers:
                return "failed", f"the previous instance {step.id!r} did not stop"
            self.entries[step.id] = new  # desired even if it fails now: reported, retried at the next start
            if self._create(new) is None:
                return "failed", self.errors[step.id]
            return step.action, None
        watcher = self.supervisor.get(step.id)  # only the state changes
        if new.running:
            await self._wait(lambda: watcher.state is not State.STOPPING)
            if watcher.state in (State.STOPPED, State.FATAL, State.BACKOFF):
                self.supervisor.restart_instance(step.id)
        else:
            self.supervisor.stop_instance(step.id)
        self.entries[step.id] = new
        return step.action, None

    async def _wait(self, done: Callable[[], bool]) -> None:
        """Until ``done()``, or the time an instance may take to stop (then it has been killed) has passed."""
        deadline = asyncio.get_running_loop().time() + self.supervisor.config.stop_timeout + STOP_GRACE
        while not done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    def _result(self, step: Step, action: str, error: str | None = None) -> dict[str, Any]:
        watcher = self.supervisor.watchers.get(step.id)
        alive = watcher is not None and not watcher.remove_when_stopped
        return {"id": step.id, "tracer": step.tracer, "action": action, "changes": step.changes,
                "state": watcher.state.value if alive and watcher is not None else None, "error": error}

    # -- saving and reporting ---------------------------------------------------------
    def _snapshot(self) -> SavedState:
        return SavedState(list(self.entries.values()), list(self.configured))

    def _save_sync(self) -> None:
        if self.file is None:
            return
        try:
            self.file.save(self._snapshot())
        except OSError as exc:
            self._save_failed(exc)
        else:
            self._saved()

    async def save(self) -> None:
        """Write the current desired state; a failure is logged and reported by health(), not raised: the change
        it records has been made."""
        if self.file is None:
            return
        async with self._save_lock:  # in order: the last write holds the latest state
            try:
                await asyncio.to_thread(self.file.save, self._snapshot())
            except OSError as exc:
                self._save_failed(exc)
            else:
                self._saved()

    def _saved(self) -> None:
        self.save_stats.saves += 1
        self.save_stats.failing = False

    def _save_failed(self, exc: OSError) -> None:
        self.save_stats.errors += 1
        self.save_stats.failing = True
        self.save_stats.last_error = str(exc)
        log.error("desired state not saved: %s", exc)

    def problems(self) -> list[str]:
        out = [f"state file not restored: {self.file_problem}"] if self.file_problem else []
        if self.save_stats.failing:
            out.append(f"the desired state could not be saved: {self.save_stats.last_error}")
        for instance_id, entry in self.entries.items():
            if instance_id not in self.supervisor.watchers:
                reason = self.errors.get(instance_id, "not started")
                out.append(f"instance {instance_id!r} (tracer {entry.tracer!r}) does not exist: {reason}")
        return out

    def health(self) -> dict[str, Any]:
        return {"file": str(self.file.path) if self.file is not None else None,
                "restored": self.restored, "instances": len(self.entries), "saves": self.save_stats.saves,
                "save_errors": self.save_stats.errors, "last_save_error": self.save_stats.last_error,
                "config_changes": self.config_changes, "problems": self.problems()}


__all__ = ["DesiredState", "DocumentError", "state_file_path"]
