"""bpftrace tracers under the agent: events, counters and histograms against a process the test
spawns, bpftrace's own error for a bad script, and a restart when bpftrace dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration.agentctl import Agent, wait_for

# Writes 1, 3 and 100 bytes to fd 9 (/dev/null) once released by a line on stdin, then exits.
CHILD = ("import os, sys; os.dup2(os.open('/dev/null', os.O_WRONLY), 9); sys.stdin.readline(); "
         "[os.write(9, b'x' * n) for n in (1, 3, 100)]")


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
    yield proc
    proc.kill()
    proc.wait()


def _samples(agent: Agent, name: str, instance: str) -> list[dict]:
    return [s for s in agent.get("/samples", name=name, latest=True) if s["labels"].get("instance") == instance]


def test_events_counter_and_histogram_of_a_spawned_process(fresh_agent: Agent,
                                                           child: subprocess.Popen[str]) -> None:
    agent = fresh_agent
    inst = agent.start("bt_writes", ["-p", str(child.pid), "-m", "2"])
    agent.wait_state(inst["id"], "running")
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.close()
    assert child.wait(10) == 0

    events = wait_for(lambda: len(e := agent.events(instance=inst["id"])) >= 2 and e, 15, "two write events")
    events.sort(key=lambda e: e["ts"])
    assert [(e["pid"], e["tid"], e["fd"], e["size"]) for e in events] == [(child.pid, child.pid, 9, 3),
                                                                          (child.pid, child.pid, 9, 100)]
    assert {e["uid"] for e in events} == {os.getuid()} and events[0]["comm"].startswith("python")

    def counter() -> list[tuple[str, float]]:
        return [(s["labels"]["fd"], s["value"]) for s in _samples(agent, "eunomia_bt_writes_total", inst["id"])]

    assert wait_for(lambda: counter() == [("9", 3.0)] and counter(), 15, "the fd 9 counter to be 3")
    buckets = {s["labels"]["le"]: s["value"] for s in _samples(agent, "eunomia_bt_write_bytes_bucket", inst["id"])}
    assert buckets["2.0"] == 1 and buckets["4.0"] == 2 and buckets["64.0"] == 2 and buckets["128.0"] == 3
    assert buckets["+Inf"] == 3
    info = agent.instance(inst["id"])
    assert info["events"] == 2
    assert info["drops"] == {"kernel": 0, "ipc": 0, "hook": 0, "store": 0, "exporter": 0, "rate": 0}
    assert info["worker"]["parse_errors"] == 0


def test_a_syntax_error_is_reported_with_bpftraces_line(fresh_agent: Agent) -> None:
    inst = fresh_agent.start("bt_syntax")
    info = wait_for(lambda: (i := fresh_agent.instance(inst["id"]))["state"] == "fatal" and i, 30, "fatal")
    assert info["restarts"] == 0
    # bpftrace's own words, naming the user's script (not the worker's rewritten copy) and its line
    assert info["last_error"].startswith("compile: "), info
    assert "tests/tracers/bt_syntax/program.bt:4:3-9: ERROR: syntax error" in info["last_error"], info
    assert 'printf("missing semicolon above\\n");' in info["last_error_log"]


def test_bpftrace_that_dies_is_restarted(fresh_agent: Agent) -> None:
    agent = fresh_agent
    inst = agent.start("bt_writes", ["-p", "1"])
    agent.wait_state(inst["id"], "running")
    first = wait_for(lambda: agent.instance(inst["id"])["worker"].get("child_pid"), 10, "bpftrace's pid")
    assert os.path.basename(os.readlink(f"/proc/{first}/exe")) == "bpftrace"
    os.kill(first, signal.SIGKILL)
    info = wait_for(lambda: (i := agent.instance(inst["id"]))["state"] == "running" and i["restarts"] == 1 and i,
                    60, "the restart after bpftrace was killed")
    assert "exited with status 1" in info["last_error"] and "bpftrace" in info["last_error"], info["last_error"]
    second = wait_for(lambda: agent.instance(inst["id"])["worker"].get("child_pid"), 10, "the new bpftrace's pid")
    assert second != first
    stopped = agent.request("POST", f"/instances/{inst['id']}/stop").json()
    assert stopped["state"] in ("stopping", "stopped")
    agent.wait_state(inst["id"], "stopped")
    wait_for(lambda: not os.path.exists(f"/proc/{second}") or "Z" in open(f"/proc/{second}/stat").read().split()[2],
             10, "bpftrace to exit with its worker")
