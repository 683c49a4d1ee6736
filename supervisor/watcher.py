"""One tracer instance: its worker process, its state and its counters.

The watcher holds no policy of its own beyond bookkeeping; the arbiter decides when
to start, stop, kill or restart it (the split circus uses between Watcher and Arbiter).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from supervisor.backoff import CrashHistory
from supervisor.containers.cgroup_filter import CgroupFilter
from supervisor.export.instance import InstanceExport
from supervisor.states import State, StateMachine
from workers.catalog import Tracer
from workers.plan import WorkerPlan
from workers.runtime import EXIT_PERMANENT

LOG_ROTATE_BYTES = 1 << 20
#: What the API shows of the live worker's heartbeat, besides its memory (*_kib).
WORKER_FIELDS = frozenset({"cpu_seconds", "produced", "sent", "hook_errors", "hook_last_error",
                           "kernel_missed_runs", "ipc_frames_dropped", "stack_map_clears",
                           "filter_cgroups", "filter_updates", "cgroup_rows_held", "cgroup_rows_assigned",
                           "cgroup_rows_retired", "cgroup_row_counts",
                           "parse_errors", "parse_last_error", "helper_errors", "child_pid"})  # bpftrace
COUNTERS = ("produced", "sent", "ipc_dropped", "kernel_dropped", "hook_dropped", "hook_errors", "rate_dropped")


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


@dataclass(slots=True)
class Watcher:
    id: str
    tracer: Tracer
    args: dict[str, Any] | list[str]
    values: dict[str, Any]
    history: CrashHistory
    log_path: Path
    sm: StateMachine = field(default_factory=StateMachine)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_error: str | None = None
    last_error_log: str = ""
    permanent_error: bool = False
    kill_reason: str | None = None
    spawned_at: float = 0.0
    hello_at: float | None = None  # the worker process is up and about to compile
    ready_at: float | None = None
    last_hb: float = 0.0
    next_hb_out: float = 0.0
    backoff_until: float = 0.0
    stop_deadline: float = 0.0
    remove_when_stopped: bool = False
    events_received: int = 0
    worker: dict[str, Any] = field(default_factory=dict)  # the latest heartbeat of the live worker
    cgroup_filter: CgroupFilter | None = None  # --container/--pod/--namespace/--host/--cgroup
    cgroup_ids: frozenset[int] = frozenset()  # what the worker's kernel map holds (last sent)
    export: InstanceExport | None = None  # the instance's own export handlers
    _base: dict[str, int] = field(default_factory=dict)  # counters of previous worker processes

    @property
    def state(self) -> State:
        return self.sm.state

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def counter(self, name: str) -> int:
        return self._base.get(name, 0) + int(self.worker.get(name, 0))

    def spawn(self, plan: WorkerPlan, confine: Callable[[int], None] | None = None) -> None:
        """Start the worker process; the plan goes over its stdin. ``confine(pid)`` runs before
        the plan is written, while the worker can do nothing but wait for it (OSError: killed)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists() and self.log_path.stat().st_size > LOG_ROTATE_BYTES:
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers"],
                stdin=subprocess.PIPE, stdout=log, stderr=log,
                close_fds=True, start_new_session=True,  # terminal signals are for the supervisor only
            )
        assert self.proc.stdin is not None
        if confine is not None:
            try:
                confine(self.proc.pid)
            except OSError:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                raise
        self.proc.stdin.write(msgpack.packb(plan.to_dict(), use_bin_type=True))
        self.proc.stdin.close()
        now = time.monotonic()
        self.spawned_at = self.last_hb = now
        self.hello_at = self.ready_at = None
        self.kill_reason = None
        self.permanent_error = False
        self.worker = {}

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def fold_counters(self) -> None:
        """The worker is gone: keep its final counters as the base for the next one."""
        for name in COUNTERS:
            self._base[name] = self.counter(name)
        self.worker = {}

    def log_tail(self, lines: int = 6) -> str:
        """The end of the worker's log; for a Python crash, faulthandler's header and innermost frames."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, fh.seek(0, 2) - 16384))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        all_lines = text.strip().splitlines()
        fatal = max((i for i, ln in enumerate(all_lines) if ln.startswith("Fatal Python error")), default=None)
        if fatal is not None:
            frames = [ln.strip() for ln in all_lines[fatal + 1:] if ln.strip().startswith("File ")]
            return "\n".join([all_lines[fatal], *frames[:3]])
        return "\n".join(all_lines[-lines:])

    def crash_message(self, returncode: int) -> str:
        if self.kill_reason:
            return self.kill_reason
        message = describe_exit(returncode)
        if returncode == EXIT_PERMANENT and self.last_error:
            return self.last_error
        tail = self.log_tail()
        return f"{message}; last output:\n{tail}" if tail else message

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tracer": self.tracer.name,
            "state": self.state.value,
            "pid": self.pid,
            "restarts": self.restarts,
            "args": self.args,
            "values": self.values,
            "events": self.events_received,
            "drops": {"kernel": self.counter("kernel_dropped"), "ipc": self.counter("ipc_dropped"),
                      "hook": self.counter("hook_dropped"), "store": 0, "exporter": 0,
                      "rate": self.counter("rate_dropped")},
            "last_error": self.last_error,
            "last_error_log": self.last_error_log,
            "state_since": self.sm.since,
            "worker": {k: v for k, v in self.worker.items() if k.endswith("_kib") or k in WORKER_FIELDS},
            "cgroup_filter": None if self.cgroup_filter is None else {
                "selects": self.cgroup_filter.describe(), "cgroups": len(self.cgroup_ids)},
        }
