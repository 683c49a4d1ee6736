"""Where limited workers' cgroups go (v2 when offered, else v1), and what is written there,
against fake cgroup trees; and the supervisor-side glue (plan options, budget, OOM reasons)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from supervisor.isolation.bpf_stats import ProgramStats, StatsSwitch
from supervisor.isolation.cgroups import Cgroups, InstanceGroup, Placement, find_placements, parse_mountinfo
from supervisor.isolation.confinement import Isolation
from supervisor.isolation.limits import IsolationConfig, IsolationLimits
from supervisor.states import State

# This host's layout: v1 controllers, a controller-less v2 at /sys/fs/cgroup/unified.
V1_MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
33 30 0:29 / {root}/cpu rw,relatime - cgroup cgroup rw,cpu
35 30 0:31 / {root}/memory rw,relatime - cgroup cgroup rw,memory
36 30 0:32 / {root}/cpuset rw,relatime - cgroup cgroup rw,cpuset
"""
V1_PROC_CGROUP = "4:memory:/sessions/abc\n3:cpuset:/\n1:cpu:/\n0::/\n"
V2_MOUNTINFO = "29 23 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_PROC_CGROUP = "0::/system.slice/eunomia.service\n"


def _v1_tree(root: Path) -> None:
    for d in ("unified", "cpu", "memory/sessions/abc", "cpuset"):
        (root / d).mkdir(parents=True)
    (root / "unified" / "cgroup.controllers").write_text("\n")


def test_parse_mountinfo_finds_v1_controllers_and_v2() -> None:
    mounts = parse_mountinfo(V1_MOUNTINFO.format(root="/sys/fs/cgroup"))
    assert [(m.version, str(m.mountpoint), sorted(m.controllers)) for m in mounts] == [
        (2, "/sys/fs/cgroup/unified", []), (1, "/sys/fs/cgroup/cpu", ["cpu"]),
        (1, "/sys/fs/cgroup/memory", ["memory"]), (1, "/sys/fs/cgroup/cpuset", [])]


def test_v1_placements_below_our_own_cgroups(tmp_path: Path) -> None:
    _v1_tree(tmp_path)
    placements, notes = find_placements(V1_MOUNTINFO.format(root=tmp_path), V1_PROC_CGROUP)
    assert {c: (p.version, p.own) for c, p in placements.items()} == {
        "memory": (1, tmp_path / "memory/sessions/abc"), "cpu": (1, tmp_path / "cpu")}
    assert notes == []


def test_v2_preferred_when_offered(tmp_path: Path) -> None:
    own = tmp_path / "system.slice/eunomia.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    placements, _ = find_placements(V2_MOUNTINFO.format(root=tmp_path), V2_PROC_CGROUP)
    assert {c: (p.version, p.own) for c, p in placements.items()} == {"memory": (2, own), "cpu": (2, own)}
    assert placements["memory"].describe() == "cgroup v2 memory.max"


def test_nothing_available_is_noted(tmp_path: Path) -> None:
    own = tmp_path / "x"
    own.mkdir()
    (own / "cgroup.controllers").write_text("pids\n")
    placements, notes = find_placements(V2_MOUNTINFO.format(root=tmp_path), "0::/x\n")
    assert placements == {}
    assert notes == ["no memory controller in cgroup v2 (pids) or v1", "no cpu controller in cgroup v2 (pids) or v1"]


def test_v1_groups_and_limits(tmp_path: Path) -> None:
    _v1_tree(tmp_path)
    cgroups = Cgroups(*find_placements(V1_MOUNTINFO.format(root=tmp_path), V1_PROC_CGROUP), owner_pid=77)
    stale = tmp_path / "cpu" / "eunomia-999999999"  # an agent that died without cleaning up
    (stale / "old-1").mkdir(parents=True)
    group = cgroups.create("hog-1", memory_bytes=128 << 20, cpu=0.25)
    memory, cpu = tmp_path / "memory/sessions/abc/eunomia-77/hog-1", tmp_path / "cpu/eunomia-77/hog-1"
    assert group.dirs() == sorted([memory, cpu])
    assert (memory / "memory.limit_in_bytes").read_text() == str(128 << 20)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "25000" and (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert not stale.exists()
    group.place(4242)
    assert (memory / "cgroup.procs").read_text() == "4242" and (cpu / "cgroup.procs").read_text() == "4242"
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (memory / "memory.usage_in_bytes").write_text("1000\n")
    (memory / "memory.max_usage_in_bytes").write_text("2000\n")
    (cpu / "cpu.stat").write_text("nr_periods 10\nnr_throttled 3\nthrottled_time 500000000\n")
    assert group.usage() == {"memory_bytes": 1000, "memory_peak_bytes": 2000, "oom_kills": 2,
                             "cpu_throttled_periods": 3, "cpu_throttled_seconds": 0.5}
    for d in (memory, cpu):  # what the kernel would not let exist in a real cgroup directory
        for f in d.iterdir():
            f.unlink()
    cgroups.close()
    assert not (tmp_path / "memory/sessions/abc/eunomia-77").exists() and not (tmp_path / "cpu/eunomia-77").exists()


def test_v2_group_delegates_controllers_and_writes_limits(tmp_path: Path) -> None:
    own = tmp_path / "system.slice/eunomia.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu memory\n")
    cgroups = Cgroups(*find_placements(V2_MOUNTINFO.format(root=tmp_path), V2_PROC_CGROUP), owner_pid=5)
    group = cgroups.create("spin-2", memory_bytes=64 << 20, cpu=0.5)
    assert group.dirs() == [own / "eunomia-5/spin-2"]
    assert (own / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (own / "eunomia-5/cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (own / "eunomia-5/spin-2/memory.max").read_text() == str(64 << 20)
    assert (own / "eunomia-5/spin-2/cpu.max").read_text() == "50000 100000"
    assert cgroups.mechanism("cpu") == "cgroup v2 cpu.max"


def _watcher(instance: str, builtin: bool = False, state: State = State.RUNNING, pid: int | None = 10):
    spec = SimpleNamespace(kind="bcc", hook=None)
    return SimpleNamespace(id=instance, tracer=SimpleNamespace(builtin=builtin, spec=spec), state=state, pid=pid)


def test_without_cgroups_the_worker_gets_rlimits_and_nice() -> None:
    isolation = Isolation(IsolationConfig(), cgroups=Cgroups({}, ["none"]), stats=StatsSwitch(enable_fd=lambda: -1))
    options = isolation.plan_options(_watcher("c-1"))
    assert options["rlimit_as_extra"] == 256 << 20 and options["nice"] == 19
    assert options["drop_privileges"] and options["drop_uid"] not in (None, 0)
    assert options["event_rate"] == 10_000 and options["event_burst"] == 20_000
    assert isolation.plan_options(_watcher("b-1", builtin=True)) == {}
    assert isolation.describe(_watcher("b-1", builtin=True)) is None
    mechanisms = isolation.describe(_watcher("c-1"))["mechanisms"]
    assert mechanisms["memory"] == "RLIMIT_AS (address space)" and mechanisms["cpu"].startswith("nice 19")


def test_budget_stops_an_instance_over_it_and_releases_statistics() -> None:
    readings = {"run": 0}
    switch = StatsSwitch(enable_fd=lambda: -1, sysctl=Path("/nonexistent/x"))
    limits = IsolationLimits(memory_bytes=0, cpu=0, bpf_budget_ms=50, bpf_window=2)
    isolation = Isolation(IsolationConfig(custom=limits), cgroups=Cgroups({}, []), stats=switch,
                          read_stats=lambda pid: ProgramStats(readings["run"], 1, 1))
    watcher = _watcher("x-1")
    isolation.confine(watcher, 10)
    assert switch.users == 1
    watchers = {"x-1": watcher}
    assert isolation.tick(0.0, watchers) == []
    readings["run"] = 40_000_000  # 40 ms in the first second: under 50 ms/s
    assert isolation.tick(1.0, watchers) == []
    readings["run"] = 240_000_000  # then 200 ms in one second: 120 ms/s over the 2 s window
    over = isolation.tick(2.0, watchers)
    assert [w.id for w, _ in over] == ["x-1"]
    assert over[0][1] == ("kernel time budget exceeded: its BPF programs ran 120 ms per second over the last 2s "
                          "(budget 50 ms/s); stopped")
    watcher.state = State.FATAL
    isolation.tick(3.0, watchers)
    assert switch.users == 0
    isolation.tick(4.0, {})  # removed: forgotten
    assert isolation.describe(watcher)["limits"]["bpf_budget_ms"] == 50


def test_oom_kill_is_explained() -> None:
    class Group(InstanceGroup):
        kills = 0

        def oom_kills(self) -> int:
            return self.kills

        def usage(self) -> dict:
            return {"memory_peak_bytes": 160 << 20}

    group = Group(memory=(1, Path("/x")))
    isolation = Isolation(IsolationConfig(custom=IsolationLimits(memory_bytes=160 << 20)), cgroups=Cgroups({}, []),
                          stats=StatsSwitch(enable_fd=lambda: -1, sysctl=Path("/nonexistent/x")))
    watcher = _watcher("hog-1")
    isolation.confine(watcher, 10)
    isolation._state["hog-1"].group = group  # as if the cgroup had been made
    isolation.cgroups = Cgroups({"memory": Placement("memory", 1, Path("/x"))}, [])
    assert isolation.exit_reason(watcher, -9) is None  # killed, but not by the OOM killer
    group.kills = 1
    assert isolation.exit_reason(watcher, -9) == ("killed by the memory limit (160 MiB, cgroup v1 "
                                                  "memory.limit_in_bytes): the kernel's OOM killer ended the worker "
                                                  "(peak 160 MiB)")
    assert isolation.exit_reason(watcher, -9) is None  # each kill explained once


def test_credentials_come_from_proc(tmp_path: Path) -> None:
    (tmp_path / "10").mkdir()
    (tmp_path / "10" / "status").write_text("Name:\tpython\nUid:\t65534\t65534\t65534\t65534\n"
                                            "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n")
    isolation = Isolation(IsolationConfig(), cgroups=Cgroups({}, []), proc=tmp_path,
                          stats=StatsSwitch(enable_fd=lambda: -1, sysctl=Path("/nonexistent/x")))
    assert isolation.describe(_watcher("c-1"))["mechanisms"]["privileges"] == \
        "user nobody, no capabilities, no_new_privs"
    isolation.confine(_watcher("c-1"), 10)
    assert isolation.describe(_watcher("c-1"))["credentials"] == {"uid": 65534, "cap_prm": "0000000000000000",
                                                                  "cap_eff": "0000000000000000", "no_new_privs": 1}


def test_an_untrusted_bpftrace_tracer_keeps_privileges_for_bpftrace_and_may_not_have_a_hook() -> None:
    isolation = Isolation(IsolationConfig(), cgroups=Cgroups({}, ["none"]), stats=StatsSwitch(enable_fd=lambda: -1))
    script = SimpleNamespace(id="bt-1", tracer=SimpleNamespace(builtin=False, spec=SimpleNamespace(kind="bpftrace",
                                                                                                 hook=None)))
    options = isolation.plan_options(script)  # type: ignore[arg-type]
    assert options["drop_privileges"] is False and options["drop_uid"] is None
    assert options["rlimit_as_extra"] == 256 << 20  # the other limits still hold
    hooked = SimpleNamespace(id="bt-2", tracer=SimpleNamespace(builtin=False, spec=SimpleNamespace(kind="bpftrace",
                                                                                                 hook="hook.py")))
    with pytest.raises(ValueError, match="an untrusted bpftrace tracer cannot have a hook.py"):
        isolation.plan_options(hooked)  # type: ignore[arg-type]
