"""Untrusted (custom) tracers misbehave; each is contained, reported and counted, and the
built-in tracer running alongside keeps delivering exactly what happened.

The misbehaving tracers (tests/tracers/{hog,spinner,raiser,flood,expensive,sneaky}) attach to
getppid(2) and are started with ``-p`` on a process this test runs, so the test knows exactly
how many events there were.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, unique, wait_for

RATE, BURST = 2000, 2000  # event-rate limit of this module's agent
BUDGET_MS, WINDOW = 20, 2  # its BPF kernel-time budget: ms per second, averaged over seconds
MEMORY = "160M"

CALLER = r"""
import os, sys, time
sys.stdin.readline()                      # wait until the tracer is attached
count, pause = int(sys.argv[1]), float(sys.argv[2])
done = 0
while count < 0 or done < count:
    os.getppid()
    done += 1
    if pause:
        time.sleep(pause)
print(done, flush=True)
"""


class Caller:
    """A process that calls getppid(2) ``count`` times (forever if negative) once told to go."""

    def __init__(self, count: int, pause: float = 0.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CALLER, str(count), str(pause)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> int:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0
        return int(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """An agent running the built-in `process` tracer, with tight limits for untrusted tracers."""
    limits = [f"memory={MEMORY}", f"event-rate={RATE}", f"event-burst={BURST}", f"bpf-budget={BUDGET_MS}",
              f"bpf-window={WINDOW}"]
    agent = Agent(tmp_path_factory.mktemp("untrusted"), tracers=["process"],
                  extra=[arg for limit in limits for arg in ("--custom-limit", limit)])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def builtin_exact(agent: Agent, tmp_path: Path) -> Iterator[None]:
    """After the test: the built-in tracer never restarted, lost nothing, and sees exactly three execs."""
    yield
    assert_builtin_exact(agent, tmp_path)


def assert_builtin_exact(agent: Agent, tmp_path: Path) -> None:
    builtin = agent.by_tracer("process")
    exe = tmp_path / unique("eu-ok")
    shutil.copy("/bin/true", exe)
    for _ in range(3):
        subprocess.run([str(exe)], check=True)
    events = wait_for(lambda: (e := [x for x in agent.events(instance=builtin["id"])
                                     if x.get("filename") == str(exe)]) and len(e) >= 3 and e, 15,
                      f"three execs of {exe.name} in {builtin['id']}")
    assert len(events) == 3
    info = agent.instance(builtin["id"])
    assert info["state"] == "running" and info["restarts"] == 0
    assert info["drops"] == {"kernel": 0, "ipc": 0, "hook": 0, "store": 0, "exporter": 0, "rate": 0}
    assert info["isolation"] is None  # built-in tracers are trusted: no limits


def _start_on(agent: Agent, tracer: str, caller: Caller) -> dict:
    inst = agent.start(tracer, ["-p", str(caller.pid)])
    return agent.wait_state(inst["id"], "running", timeout=60)


def _remove(agent: Agent, instance_id: str) -> None:
    assert agent.request("DELETE", f"/instances/{instance_id}").status_code == 204
    wait_for(lambda: instance_id not in {i["id"] for i in agent.instances()}, 15, f"{instance_id} to be removed")


def test_hook_that_allocates_without_bound_is_killed_by_the_memory_limit(agent: Agent, builtin_exact: None) -> None:
    caller = Caller(-1, pause=0.05)
    try:
        inst = _start_on(agent, "hog", caller)
        assert inst["isolation"]["limits"]["memory_bytes"] == 160 << 20
        assert inst["isolation"]["mechanisms"]["memory"].startswith("cgroup v")
        caller.go()
        seen: set[str] = set()

        def fatal() -> dict | None:
            info = agent.instance(inst["id"])
            seen.add(info["state"])
            return info if info["state"] == "fatal" else None

        info = wait_for(fatal, 90, "the hog to be killed five times and declared fatal", interval=0.2)
    finally:
        caller.stop()
    assert "backoff" in seen
    assert info["restarts"] == 4
    assert "gave up after 5 crashes" in info["last_error"]
    assert "killed by the memory limit (160 MiB" in info["last_error"]
    assert info["isolation"]["oom_kills"] == 5
    _remove(agent, inst["id"])


def test_hook_that_spins_is_held_to_its_cpu_share(agent: Agent, builtin_exact: None) -> None:
    caller = Caller(-1, pause=0.5)
    try:
        inst = _start_on(agent, "spinner", caller)
        caller.go()
        limit = inst["isolation"]["limits"]["cpu"]
        first = wait_for(lambda: (i := agent.instance(inst["id"]))["worker"].get("cpu_seconds") and i, 10,
                         "a heartbeat with the spinner's CPU time")
        start = time.monotonic()
        later = wait_for(lambda: (i := agent.instance(inst["id"]))["worker"]["cpu_seconds"]
                         >= first["worker"]["cpu_seconds"] + 1.5 * limit and i, 30, "the spinner to burn CPU")
        elapsed = time.monotonic() - start
        used = later["worker"]["cpu_seconds"] - first["worker"]["cpu_seconds"]
        # Two spinning threads would take both CPUs; the quota allows `limit` CPUs, plus one
        # heartbeat interval of reporting lag on either side.
        assert used <= limit * (elapsed + 2.0), (used, elapsed)
        assert later["isolation"]["cpu_throttled_periods"] > 0
        assert later["state"] == "running" and later["restarts"] == 0
    finally:
        caller.stop()
    _remove(agent, inst["id"])


def test_hook_that_raises_is_counted_and_contained(agent: Agent, builtin_exact: None) -> None:
    calls = 50
    caller = Caller(calls)
    try:
        inst = _start_on(agent, "raiser", caller)
        caller.go()
        assert caller.finish() == calls
    finally:
        caller.stop()
    info = wait_for(lambda: (i := agent.instance(inst["id"]))["worker"].get("hook_errors") == calls and i, 15,
                    f"{calls} hook errors")
    assert info["drops"]["hook"] == calls
    assert info["worker"]["hook_last_error"] == f"ValueError: cannot handle pid {caller.pid}"
    assert info["state"] == "running" and info["restarts"] == 0
    assert agent.events(instance=inst["id"]) == []
    _remove(agent, inst["id"])


def test_flood_is_cut_to_the_event_rate_and_every_event_is_accounted_for(agent: Agent,
                                                                         builtin_exact: None) -> None:
    calls = 100_000
    caller = Caller(calls)
    try:
        inst = _start_on(agent, "flood", caller)
        began = time.monotonic()
        caller.go()
        assert caller.finish() == calls
        ended = time.monotonic()
    finally:
        caller.stop()

    def accounted() -> tuple[int, dict] | None:
        info = agent.instance(inst["id"])
        stored = len(agent.events(instance=inst["id"], pid=caller.pid))
        total = stored + sum(info["drops"].values())
        return (stored, info) if total == calls else None

    stored, info = wait_for(accounted, 30, f"stored events + counted drops to add up to {calls}")
    drops = info["drops"]
    assert drops["rate"] > 0
    assert drops["ipc"] == drops["hook"] == drops["store"] == 0
    # everything the ring buffer held was read (produced grows at the worker's flush, which
    # can follow the heartbeat that had the last rate drops)
    wait_for(lambda: agent.instance(inst["id"])["worker"].get("produced") == calls - drops["kernel"], 5,
             "a heartbeat sent after the last flush")
    assert stored <= RATE * (ended - began + 1) + BURST  # the bucket's rate plus its burst, at most
    samples = agent.get("/samples", name="eunomia_instance_dropped_total", instance=inst["id"], latest=True)
    assert any(s["labels"].get("hop") == "rate" for s in samples)
    _remove(agent, inst["id"])


def test_program_over_its_kernel_time_budget_is_stopped_with_the_reason(agent: Agent, builtin_exact: None) -> None:
    caller = Caller(-1)
    try:
        inst = _start_on(agent, "expensive", caller)
        caller.go()
        info = agent.wait_state(inst["id"], "fatal", timeout=30)
    finally:
        caller.stop()
    assert info["restarts"] == 0
    assert info["last_error"].startswith("kernel time budget exceeded: its BPF programs ran ")
    assert f"(budget {BUDGET_MS} ms/s); stopped" in info["last_error"]
    ran = int(info["last_error"].split("ran ")[1].split(" ms")[0])
    assert ran > BUDGET_MS
    assert info["isolation"]["bpf_run_count"] > 0 and info["isolation"]["bpf_run_time_ns"] > 0
    _remove(agent, inst["id"])


def test_hook_runs_without_privileges(agent: Agent, builtin_exact: None) -> None:
    caller = Caller(1)
    try:
        inst = _start_on(agent, "sneaky", caller)
        creds = inst["isolation"]["credentials"]
        assert creds == {"uid": 65534, "cap_eff": "0000000000000000", "cap_prm": "0000000000000000",
                         "no_new_privs": 1}
        caller.go()
        caller.finish()
    finally:
        caller.stop()
    event = wait_for(lambda: agent.events(instance=inst["id"], pid=caller.pid), 15, "the sneaky hook's report")[0]
    report = json.loads(event["report"])
    assert report["Uid"] == "65534"
    assert report["CapEff"] == report["CapPrm"] == report["CapBnd"] == "0000000000000000"
    assert report["NoNewPrivs"] == "1"
    for attempt in ("kmsg", "raw_socket", "setuid0", "cgroup_escape", "etc_write"):
        assert report[attempt] == "PermissionError", (attempt, report)
    assert not Path("/etc/eunomia-sneaky-test").exists()
    _remove(agent, inst["id"])


def test_without_cgroups_rlimits_and_priority_hold(tmp_path: Path) -> None:
    """With `--custom-limit cgroups=no` (as on a host without controllers): RLIMIT_AS makes the
    hog's allocations fail inside the hook (counted, the worker lives on) and the workers get nice 19."""
    agent = Agent(tmp_path / "agent", tracers=["process"], extra=["--custom-limit", "cgroups=no",
                                                                  "--custom-limit", "memory=200M"])
    caller = Caller(-1, pause=0.05)
    try:
        agent.wait_running()
        inst = _start_on(agent, "hog", caller)
        assert inst["isolation"]["mechanisms"]["memory"] == "RLIMIT_AS (address space)"
        assert "cgroups" not in inst["isolation"]
        limits = Path(f"/proc/{inst['pid']}/limits").read_text()
        address_space = next(line for line in limits.splitlines() if line.startswith("Max address space"))
        assert address_space.split()[3] != "unlimited"
        assert int(Path(f"/proc/{inst['pid']}/stat").read_text().rsplit(")", 1)[1].split()[16]) == 19  # nice
        caller.go()
        info = wait_for(lambda: (i := agent.instance(inst["id"]))["worker"].get("hook_errors", 0) >= 3 and i, 30,
                        "allocations to fail in the hook")
        assert info["worker"]["hook_last_error"].startswith("MemoryError")
        assert info["state"] == "running" and info["restarts"] == 0 and info["pid"] == inst["pid"]
        assert_builtin_exact(agent, tmp_path)
    finally:
        caller.stop()
        agent.stop()
