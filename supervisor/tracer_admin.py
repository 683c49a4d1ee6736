"""Add and remove tracers of a running agent, without touching the other tracers.

A tracer comes in as a folder on the agent's host or as an uploaded archive. Either way it
is copied into ``<state dir>/custom-tracers/`` (mode 0700) first, then validated (the spec,
with errors naming the field), digested and checked against the policy, and only then
added to the catalogue. Nothing is compiled until an instance starts. What was added this
way lasts until the agent stops (the directory is emptied at start); tracers that should
always be there belong in a ``--tracer-path`` directory.

Removing a tracer that has instances is refused unless ``force`` is given, which stops and
removes those instances first. Built-in tracers cannot be removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipc.runtime_dir import ensure_private_dir
from supervisor.states import State
from supervisor.tracer_intake import IntakeError, copy_folder, extract_archive, spec_name
from supervisor.tracer_policy import CustomTracerPolicy, Refused
from workers.catalog import Tracer
from workers.folder_digest import folder_digest
from workers.spec import SpecError, TracerSpec, load_spec

if TYPE_CHECKING:
    from supervisor.arbiter import Supervisor
    from supervisor.watcher import Watcher

STORE_NAME = "custom-tracers"
SETTLED = (State.RUNNING, State.FATAL, State.BACKOFF, State.STOPPED)
_VERIFIER_LOCATION = re.compile(r"@ ([\w./-]+):(\d+)\s*$")  # the verifier's line info: ";  @ program.bpf.c:22"
_COMPILER_LOCATION = re.compile(r"^([\w./-]+):(\d+):\d+: (?:fatal )?error:")


def failure_source(log: str, folders: list[Path]) -> str | None:
    """``file:line: source text`` of the line a compiler error or verifier rejection points at."""
    location = None
    for line in log.splitlines():
        compiler = _COMPILER_LOCATION.match(line.strip())
        if compiler:
            location = compiler.groups()
            break
        if line.startswith("processed ") and " insns" in line:
            break
        verifier = _VERIFIER_LOCATION.search(line)
        if verifier and verifier.group(2) != "0":
            location = verifier.groups()
    if location is None:
        return None
    name, number = Path(location[0]).name, int(location[1])
    for folder in folders:
        with contextlib.suppress(OSError, IndexError):
            text = (folder / name).read_text(errors="replace").splitlines()[number - 1]
            return f"{name}:{number}: {text.strip()}"
    return f"{name}:{number}"


class TracerConflict(RuntimeError):
    """The name is taken (409) or the tracer still has instances."""


class NotATracer(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class Added:
    tracer: Tracer
    created: bool  # False: the very same folder (same digest) was there already


@dataclass(frozen=True, slots=True)
class FirstStart:
    """How the first instance of a new tracer fared (``POST /tracers?start=true``)."""

    watcher: Watcher
    ok: bool
    settled: bool  # False: still starting when the wait ran out


class TracerAdmin:
    def __init__(self, supervisor: Supervisor, policy: CustomTracerPolicy, state_dir: Path) -> None:
        self.supervisor = supervisor
        self.policy = policy
        self.store = state_dir / STORE_NAME
        self._lock = asyncio.Lock()
        if self.store.exists():  # tracers added over the API do not outlive the agent
            shutil.rmtree(self.store, ignore_errors=True)

    # -- adding -----------------------------------------------------------------------
    async def add_path(self, path: str) -> Added:
        self.policy.check_enabled()
        if not os.path.isabs(path):
            raise IntakeError(f"path {path!r}: an absolute path on the agent's host is needed")
        real = Path(os.path.realpath(path))
        if not real.is_dir():
            raise IntakeError(f"{path}: no such directory on the agent's host")
        self.policy.check_path(real)
        return await self._add(lambda dest: copy_folder(real, dest, self.policy.intake), "path", str(real), real)

    async def add_archive(self, data: bytes) -> Added:
        self.policy.check_enabled()
        return await self._add(lambda dest: extract_archive(data, dest, self.policy.intake), "uploaded", "upload",
                               None)

    async def _add(self, bring: Callable[[Path], None], origin: str, source: str, where: Path | None) -> Added:
        async with self._lock:  # one addition at a time: names and folders stay consistent
            staging = self.store / f".staging-{uuid.uuid4().hex}"
            try:
                folder, spec, digest = await asyncio.to_thread(self._prepare, bring, staging)
                self.policy.check_digest(digest, where)
                existing = self.supervisor.catalog.tracers.get(spec.name)
                if existing is not None:
                    if existing.builtin:
                        raise TracerConflict(f"{spec.name!r} is a built-in tracer; choose another name")
                    if existing.digest == digest:
                        return Added(existing, created=False)
                    raise TracerConflict(f"a different tracer named {spec.name!r} is loaded ({existing.origin}, "
                                         f"{existing.digest}); remove it first")
                final = self.store / f"{spec.name}-{digest.removeprefix('sha256:')[:16]}"
                shutil.rmtree(final, ignore_errors=True)
                final.mkdir(mode=0o700)
                folder.rename(final / spec.name)
                tracer = Tracer(spec, final / spec.name, builtin=False, origin=origin, digest=digest, source=source)
                self.supervisor.catalog.add(tracer)
                return Added(tracer, created=True)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _prepare(self, bring: Callable[[Path], None], staging: Path) -> tuple[Path, TracerSpec, str]:
        """In a thread: copy or extract, name the folder after its spec, validate, digest."""
        ensure_private_dir(self.store)
        incoming = staging / "incoming"
        staging.mkdir(mode=0o700)
        bring(incoming)
        name = spec_name(incoming)
        folder = staging / name
        incoming.rename(folder)
        spec = load_spec(folder)  # SpecError names the field
        return folder, spec, folder_digest(folder)

    # -- first start ------------------------------------------------------------------
    async def first_start(self, name: str, args: dict[str, Any] | list[str], instance_id: str | None,
                          wait: float) -> FirstStart:
        """Start an instance and wait until it runs or fails (compile, verifier, hook) or ``wait`` ends."""
        watcher = self.supervisor.start_instance(name, args, instance_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while watcher.state not in SETTLED and loop.time() < deadline:
            await asyncio.sleep(0.05)
        settled = watcher.state in SETTLED
        return FirstStart(watcher, ok=watcher.state is State.RUNNING or not settled, settled=settled)

    # -- removing ---------------------------------------------------------------------
    def remove(self, name: str, force: bool = False) -> list[str]:
        """Forget a tracer (and with ``force`` its instances); returns the removed instance ids."""
        self.policy.check_enabled()
        tracer = self.supervisor.catalog.tracers.get(name)
        if tracer is None:
            raise NotATracer(f"no tracer named {name!r}")
        if tracer.builtin:
            raise Refused(f"{name!r} is a built-in tracer; built-in tracers cannot be removed")
        instances = [w.id for w in self.supervisor.watchers.values() if w.tracer.name == name]
        if instances and not force:
            raise TracerConflict(f"tracer {name!r} has instances: {', '.join(instances)}; remove them first "
                                 "or pass force=true to stop and remove them")
        for instance_id in instances:
            with contextlib.suppress(KeyError):
                self.supervisor.stop_instance(instance_id, remove=True)
        self.supervisor.catalog.remove(name)
        if tracer.origin in ("path", "uploaded") and tracer.folder.parent.parent == self.store:
            shutil.rmtree(tracer.folder.parent, ignore_errors=True)
        return instances

    def rollback(self, name: str) -> None:
        """Undo an addition whose first instance failed: the instance and the tracer go."""
        with contextlib.suppress(KeyError, Refused, TracerConflict):
            self.remove(name, force=True)


__all__ = ["Added", "FirstStart", "IntakeError", "NotATracer", "Refused", "SpecError", "TracerAdmin",
           "TracerConflict"]
