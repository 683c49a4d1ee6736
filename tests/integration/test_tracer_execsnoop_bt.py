"""execsnoop_bt (a bpftrace tracer): exec events and the exec counter against programs this test runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, unique, wait_for


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("agent"), tracers=["execsnoop_bt"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def test_execs_and_a_failed_exec_with_exact_pids_and_count(agent: Agent, tmp_path: Path) -> None:
    name = unique("eu-btx")
    exe = tmp_path / name
    shutil.copy("/bin/true", exe)
    pids = []
    for _ in range(3):
        child = subprocess.Popen([str(exe), "arg"])
        assert child.wait() == 0
        pids.append(child.pid)
    missing = str(tmp_path / "no-such-program")
    failed = subprocess.Popen(["/bin/sh", "-c", f"exec {missing}"], stderr=subprocess.DEVNULL)
    assert failed.wait() == 127

    def events() -> list[dict]:
        return [e for e in agent.events(tracer="execsnoop_bt") if e["pid"] in (*pids, failed.pid)]

    found = wait_for(lambda: len(e := events()) >= 5 and e, 15, "three execs and the failed one")
    ok = sorted((e["pid"], e["comm"], e["filename"]) for e in found if e["ret"] == 0 and e["pid"] in pids)
    assert ok == sorted((pid, name, str(exe)) for pid in pids)
    bad = [(e["pid"], e["ret"], e["filename"]) for e in found if e["ret"] != 0]
    assert bad == [(failed.pid, -2, missing)]  # ENOENT
    assert {e["uid"] for e in found} == {os.getuid()}

    def count() -> float | None:
        series = [s["value"] for s in agent.get("/samples", name="eunomia_execsnoop_bt_execs_total", latest=True)
                  if s["labels"].get("comm") == name]
        return series[0] if series else None

    assert wait_for(lambda: count() == 3, 15, f"the exec counter of {name} to be 3")


def test_agent_does_not_trace_itself(agent: Agent) -> None:
    subprocess.run(["/bin/true"], check=True)
    wait_for(lambda: agent.events(tracer="execsnoop_bt", comm="true"), 15, "an event from /bin/true")
    own = {agent.proc.pid} | agent.worker_pids()
    assert len(own) >= 3  # supervisor, worker, bpftrace
    traced = {e["pid"] for e in agent.events(tracer="execsnoop_bt")}
    assert not traced & own, f"agent processes traced: {traced & own}"
