"""funclatency: a function in a program this test compiles, called a known number of times."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, compile_c, enter_cgroup, private_cgroup, wait_for

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
__attribute__((noinline)) void eunomia_target(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, 0);
    __asm__ volatile("" ::: "memory");
}
int main(int argc, char **argv)
{
    int calls = atoi(argv[1]);
    if (argc > 3)
        (void)getchar();  /* wait until the test says go */
    for (int i = 0; i < calls; i++)
        eunomia_target(atol(argv[2]));
    return 0;
}
"""
CALLS = 7
SLEEP_MS = 20  # 20 ms lies in the log2 bucket [2^24 ns, 2^25 ns) ≈ [16.8 ms, 33.6 ms)


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(tmp_path_factory.mktemp("funclat"), "target", PROGRAM)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("agent"), tracers=[])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _histogram(agent: Agent, instance: str, cgroup_id: int) -> dict[str, float]:
    samples = agent.latest("eunomia_funclatency_latency_seconds_bucket", instance=instance, cgroup_id=cgroup_id)
    return {s["labels"]["le"]: s["value"] for s in samples}


def _cgroup_ids(agent: Agent, instance: str) -> set[str]:
    return {s["labels"]["cgroup_id"] for s in agent.latest("eunomia_funclatency_latency_seconds_count",
                                                            instance=instance)}


def test_histogram_counts_every_call_in_the_right_bucket(agent: Agent, program: Path) -> None:
    """Every call of the program (run in a cgroup of its own) in its cgroup's histogram."""
    inst = agent.start("funclatency", {"target": f"{program}:eunomia_target"})
    agent.wait_state(inst["id"], "running")
    with private_cgroup() as cgroup:
        subprocess.run([str(program), str(CALLS), str(SLEEP_MS)], check=True, preexec_fn=enter_cgroup(cgroup))
        cgroup_id = os.stat(cgroup).st_ino
    buckets = wait_for(lambda: (h := _histogram(agent, inst["id"], cgroup_id)) and h.get("+Inf") == CALLS and h, 15,
                       "all calls in the histogram")
    below, upper = repr(2**24 * 1e-9), repr(2**25 * 1e-9)
    assert buckets[below] == 0 and buckets[upper] == CALLS  # cumulative: all calls between 16.8 and 33.6 ms
    assert _cgroup_ids(agent, inst["id"]) == {str(cgroup_id)}  # nothing else calls the test's own program


def test_per_call_events_with_pid_filter(agent: Agent, program: Path) -> None:
    with private_cgroup() as mine, private_cgroup() as theirs:
        traced, other = (subprocess.Popen([str(program), "3", "1", "wait"], stdin=subprocess.PIPE,
                                          preexec_fn=enter_cgroup(cgroup)) for cgroup in (mine, theirs))
        inst = agent.start("funclatency", ["--target", f"{program}:eunomia_target", "--events", "-p", str(traced.pid)])
        agent.wait_state(inst["id"], "running")
        for child in (other, traced):
            child.communicate(b"go\n")
        cgroup_id = os.stat(mine).st_ino
    events = wait_for(lambda: len(e := agent.events(instance=inst["id"])) >= 3 and e, 15, "three call events")
    assert len(events) == 3
    assert {(e["pid"], e["cgroup_id"]) for e in events} == {(traced.pid, cgroup_id)}
    assert all(e["latency_ns"] >= 1_000_000 and e["comm"] == "target" for e in events)
    # both programs have exited: the histogram holds exactly the traced program's three calls
    wait_for(lambda: _histogram(agent, inst["id"], cgroup_id).get("+Inf") == 3, 10, "three calls in the histogram")
    time.sleep(1.5)  # one more read of the kernel's map (every second in tests)
    assert _histogram(agent, inst["id"], cgroup_id)["+Inf"] == 3
    assert _cgroup_ids(agent, inst["id"]) == {str(cgroup_id)}


def test_a_missing_symbol_is_fatal_with_a_clear_message(agent: Agent, program: Path) -> None:
    inst = agent.start("funclatency", {"target": f"{program}:no_such_function"})
    info = agent.wait_state(inst["id"], "fatal", timeout=30)
    assert info["restarts"] == 0
    assert "cannot attach uprobe" in info["last_error"] and "no_such_function" in info["last_error"]
    bad = agent.request("POST", "/instances", json={"tracer": "funclatency", "args": {}})
    assert bad.status_code == 400 and "'target'" in bad.json()["detail"] and "required" in bad.json()["detail"]
    before = {i["id"] for i in agent.get("/instances")}
    bad = agent.request("POST", "/instances", json={"tracer": "funclatency", "args": {"target": "nocolon"}})
    assert bad.status_code == 400 and "binary:symbol" in bad.json()["detail"]
    assert {i["id"] for i in agent.get("/instances")} == before  # a refused instance leaves nothing behind
