"""The supervisor's side of untrusted-tracer isolation, one object for the arbiter to call.

* :meth:`Isolation.plan_options`: what the worker applies itself (privilege drop, event-rate
  limit, and rlimits where no cgroup controller is available);
* :meth:`Isolation.confine`: puts a freshly spawned worker into its cgroups, before it has
  received its plan (so before it compiles or runs anything of the tracer's);
* :meth:`Isolation.tick`: reads each limited worker's BPF run time once a second and names
  the instances over their kernel-time budget; keeps BPF statistics on only while needed;
* :meth:`Isolation.exit_reason`: explains a worker the memory cgroup's OOM killer ended;
* :meth:`Isolation.describe`: limits, mechanisms and usage for the API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.isolation.bpf_stats import BudgetWindow, ProgramStats, StatsSwitch, program_stats
from supervisor.isolation.cgroups import Cgroups, InstanceGroup
from supervisor.isolation.limits import IsolationConfig, IsolationLimits
from supervisor.states import State

if TYPE_CHECKING:
    from supervisor.watcher import Watcher

log = logging.getLogger("eunomia.isolation")
SAMPLE_INTERVAL = 1.0  # seconds between reads of a worker's BPF statistics
FALLBACK_NICE = 19


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


@dataclass(slots=True)
class _Confined:
    limits: IsolationLimits
    group: InstanceGroup | None = None
    group_error: str = ""
    window: BudgetWindow | None = None
    stats: ProgramStats | None = None
    pid: int | None = None
    holds_stats: bool = False
    next_sample: float = 0.0
    budget_stops: int = 0


class Isolation:
    def __init__(self, config: IsolationConfig, cgroups: Cgroups | None = None, stats: StatsSwitch | None = None,
                 read_stats: Callable[[int], ProgramStats | None] = program_stats, proc: Path = Path("/proc")) -> None:
        self.config = config
        self.cgroups = cgroups if cgroups is not None else Cgroups.from_host()
        self.stats = stats or StatsSwitch()
        self.read_stats = read_stats
        self.proc = proc
        self._state: dict[str, _Confined] = {}

    # -- what applies -----------------------------------------------------------------
    def limits_for(self, watcher: Watcher) -> IsolationLimits | None:
        return self.config.for_tracer(watcher.tracer.builtin)

    def _cgroup(self, limits: IsolationLimits, controller: str) -> bool:
        return limits.cgroups and controller in self.cgroups.placements

    def mechanisms(self, limits: IsolationLimits) -> dict[str, str | None]:
        memory = (self.cgroups.mechanism("memory") if self._cgroup(limits, "memory")
                  else "RLIMIT_AS (address space)")
        cpu = (self.cgroups.mechanism("cpu") if self._cgroup(limits, "cpu")
               else f"nice {FALLBACK_NICE} (no cgroup cpu controller in use)")
        return {
            "memory": memory if limits.memory_bytes else None,
            "cpu": cpu if limits.cpu else None,
            "event_rate": "token bucket in the worker" if limits.event_rate else None,
            "bpf_budget": ("BPF run-time statistics, " + (self.stats.mechanism or "bpf(BPF_ENABLE_STATS)"))
            if limits.bpf_budget_ms else None,
            "privileges": (f"user {limits.user or 'root'}, no capabilities, no_new_privs"
                           if limits.drop_privileges else None),
        }

    def plan_options(self, watcher: Watcher) -> dict[str, Any]:
        """Keyword arguments for the worker's plan (see workers/plan.py)."""
        limits = self.limits_for(watcher)
        if limits is None:
            return {}
        drop = limits.drop_privileges
        spec = watcher.tracer.spec
        if drop and spec.kind == "bpftrace":
            # bpftrace, the worker's child, loads the programs as long as it runs and needs root's
            # capabilities for it: the worker cannot drop them, so it must not run user code.
            if spec.hook:
                raise ValueError("an untrusted bpftrace tracer cannot have a hook.py: its worker keeps the "
                                 "privileges bpftrace needs (use a BCC tracer, or trust the tracer)")
            drop = False
        uid, gid = limits.ids() if drop else (None, None)
        options: dict[str, Any] = {"drop_privileges": drop, "drop_uid": uid, "drop_gid": gid}
        if limits.event_rate:
            options["event_rate"] = limits.event_rate
            options["event_burst"] = max(1, limits.event_burst)
        if limits.memory_bytes and not self._cgroup(limits, "memory"):
            options["rlimit_as_extra"] = limits.memory_bytes
        if limits.cpu and not self._cgroup(limits, "cpu"):
            options["nice"] = FALLBACK_NICE
        return options

    # -- process lifecycle ------------------------------------------------------------
    def confine(self, watcher: Watcher, pid: int) -> None:
        """Place the new worker in its cgroups (raises OSError: the worker must not run unconfined)."""
        limits = self.limits_for(watcher)
        if limits is None:
            return
        state = self._state.get(watcher.id)
        if state is None or state.limits != limits:
            state = self._state[watcher.id] = _Confined(limits)
        memory = limits.memory_bytes if self._cgroup(limits, "memory") else 0
        cpu = limits.cpu if self._cgroup(limits, "cpu") else 0.0
        if (memory or cpu) and state.group is None:
            state.group = self.cgroups.create(watcher.id, memory, cpu)
        if state.group is not None:
            state.group.place(pid)
            state.group.oom_kills_seen = state.group.oom_kills()
        state.pid = pid
        state.stats = None
        if limits.bpf_budget_ms:
            state.window = BudgetWindow(limits.bpf_budget_ms, limits.bpf_window)
            if not state.holds_stats:
                self.stats.acquire()
                state.holds_stats = True

    def exit_reason(self, watcher: Watcher, returncode: int) -> str | None:
        """Why the worker died, when a limit of ours did it."""
        state = self._state.get(watcher.id)
        if state is None or state.group is None or state.group.memory is None:
            return None
        kills = state.group.oom_kills()
        if kills > state.group.oom_kills_seen:
            state.group.oom_kills_seen = kills
            usage = state.group.usage()
            peak = usage.get("memory_peak_bytes")
            return (f"killed by the memory limit ({_mib(state.limits.memory_bytes)}, "
                    f"{self.cgroups.mechanism('memory')}): the kernel's OOM killer ended the worker"
                    + (f" (peak {_mib(peak)})" if peak else ""))
        return None

    def tick(self, now: float, watchers: Mapping[str, Watcher]) -> list[tuple[Watcher, str]]:
        """Sample BPF run time; return the instances over their budget, with the reason.

        Also forgets instances that are gone and releases BPF statistics that nobody needs.
        """
        over: list[tuple[Watcher, str]] = []
        for instance_id in [i for i in self._state if i not in watchers]:
            self._forget(instance_id)
        for instance_id, state in self._state.items():
            watcher = watchers[instance_id]
            alive = watcher.state in (State.STARTING, State.RUNNING)
            if state.holds_stats and not alive:
                self.stats.release()
                state.holds_stats = False
            if not alive or state.window is None or watcher.pid is None or now < state.next_sample:
                continue
            state.next_sample = now + SAMPLE_INTERVAL
            stats = self.read_stats(watcher.pid)
            if stats is None:
                continue
            state.stats = stats
            if watcher.state is not State.RUNNING:
                continue  # compile time is not the program's run time; the window starts at ready
            state.window.add(now, stats.run_time_ns)
            if state.window.over():
                rate = state.window.rate_ms_per_s() or 0.0
                state.budget_stops += 1
                over.append((watcher, f"kernel time budget exceeded: its BPF programs ran {rate:.0f} ms per second "
                             f"over the last {state.window.span():.0f}s (budget {state.limits.bpf_budget_ms:g} ms/s); "
                             "stopped"))
        return over

    def _forget(self, instance_id: str) -> None:
        state = self._state.pop(instance_id)
        if state.holds_stats:
            self.stats.release()
        if state.group is not None:
            state.group.remove()

    def close(self) -> None:
        for instance_id in list(self._state):
            self._forget(instance_id)
        self.stats.close()
        self.cgroups.close()

    # -- reporting --------------------------------------------------------------------
    def describe(self, watcher: Watcher) -> dict[str, Any] | None:
        limits = self.limits_for(watcher)
        if limits is None:
            return None
        state = self._state.get(watcher.id)
        info: dict[str, Any] = {"limits": limits.to_dict(), "mechanisms": self.mechanisms(limits)}
        if state is None:
            return info
        if state.group is not None:
            info["cgroups"] = [str(d) for d in state.group.dirs()]
            info.update(state.group.usage())
        if state.stats is not None:
            info["bpf_run_time_ns"] = state.stats.run_time_ns
            info["bpf_run_count"] = state.stats.run_count
            info["bpf_programs"] = state.stats.programs
        if state.window is not None:
            rate = state.window.rate_ms_per_s()
            info["bpf_ms_per_s"] = None if rate is None else round(rate, 3)
            info["bpf_window_seconds"] = round(state.window.span(), 3)
        info["bpf_stats_enabled"] = self.stats.enabled
        if watcher.pid is not None:
            info["credentials"] = self._credentials(watcher.pid)
        return info

    def _credentials(self, pid: int) -> dict[str, Any]:
        """The live worker's uid, capabilities and no_new_privs, as the kernel reports them."""
        wanted = {"Uid": "uid", "CapEff": "cap_eff", "CapPrm": "cap_prm", "NoNewPrivs": "no_new_privs"}
        out: dict[str, Any] = {}
        try:
            for line in (self.proc / str(pid) / "status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in wanted:
                    out[wanted[key]] = value.split()[0] if key == "Uid" else value.strip()
        except OSError:
            return {}
        if "uid" in out:
            out["uid"] = int(out["uid"])
        if "no_new_privs" in out:
            out["no_new_privs"] = int(out["no_new_privs"])
        return out
