"""runqlat: the run-queue waits of a child that sleeps and wakes a known number of times.

Ground truth: the child (single-threaded, its own comm) blocks on a pipe while the tracer
starts, then sleeps 1 ms 200 times, says it is done and blocks again. Each sleep ends in
a wakeup and a switch-in, so it waits on a run queue at least 201 times. Every latency
the tracer records ends at a switch-in of the child, and the kernel counts the child's
switch-ins in /proc/<pid>/schedstat (third field, read while the child is blocked before
and after): the histogram count is that number, never more.

It can be less only where a switch never reached the tracer, and each such loss is one
latency counted in the instance's kernel drops: a program run the kernel skipped because
another BPF program was running on the CPU (recursion misses), or a sched_switch that
never reached BPF programs at all (on this kernel it occasionally does not: measured at
0-7 per 200 switch-ins of a similar child, all right after a switch away from a thread of
the VM's init); the tracer notices those at the thread's next switch-out
(bpf/runqlat/program.bpf.c). The instances are stopped before they are read, so their
drops are final, and the lower bound is exactly the switch-ins less the drops.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.agentctl import Agent, unique, wait_for
from tests.integration.piped_child import PipedChild

SLEEPS = 200
CHILD = r"""
import os, sys, time
with open("/proc/self/comm", "w") as fh:
    fh.write(sys.argv[1])
os.write(1, b"ready\n")
os.read(0, 1)
for _ in range(int(sys.argv[2])):
    time.sleep(0.001)
os.write(1, b"done\n")
os.read(0, 1)
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("runqlat"), tracers=["runqlat"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


class Sleeper(PipedChild):
    """The child, in a cgroup of its own (nothing else runs there)."""

    def __init__(self) -> None:
        super().__init__(CHILD, [str(SLEEPS)], "eu-rq", "eunomia-runqlat")

    def switch_ins(self) -> int:
        return self.schedstat()[1]

    def run(self) -> int:
        """Release the child, let it sleep SLEEPS times; its switch-ins meanwhile."""
        before = self.switch_ins()
        self.step()
        return self.switch_ins() - before


def _series(agent: Agent, instance: str, since_ns: int = 0) -> list[dict]:
    """The instance's latest histogram counts, once it has sent a sample taken after ``since_ns``."""
    series = [s for s in agent.get("/samples", name="eunomia_runqlat_latency_seconds_count", latest=True,
                                                 instance=instance, limit=100_000)
              if s["labels"].get("instance") == instance]
    return series if any(s["ts"] > since_ns for s in series) else []


def _count_for(series: list[dict], pid: int) -> float:
    return sum(s["value"] for s in series if s["labels"]["pid"] == str(pid))


def _stop(agent: Agent, instance: str) -> int:
    """Stop the instance (its worker reads the maps one last time): its final kernel drops."""
    agent.request("POST", f"/instances/{instance}/stop")
    return agent.wait_state(instance, "stopped")["drops"]["kernel"]


def _check_count(counted: float, switch_ins: int, drops: int) -> None:
    """One latency per switch-in of the child, never more; fewer by at most the drops (each
    lost switch costs one latency and is counted; see the module doc)."""
    assert switch_ins > SLEEPS
    assert switch_ins - drops <= counted <= switch_ins, (counted, switch_ins, drops)


def test_per_process_histogram_of_a_sleeping_child(agent: Agent) -> None:
    child = Sleeper()
    inst = agent.start("runqlat", {"pid": child.pid, "pids": True})
    try:
        agent.wait_state(inst["id"], "running")
        switch_ins = child.run()
        done = time.time_ns()
        drops = _stop(agent, inst["id"])
        series = wait_for(lambda: _series(agent, inst["id"], done), 10, "the final read's samples")
        _check_count(_count_for(series, child.pid), switch_ins, drops)
        # the pid filter applies to the task that waited: nothing else in this instance; its cgroup
        assert {(s["labels"]["cgroup_id"], s["labels"]["pid"], s["labels"]["comm"]) for s in series} == {
            (child.cgroup_id, str(child.pid), child.name)}
    finally:
        agent.request("DELETE", f"/instances/{inst['id']}")
        child.close()


def test_unfiltered_histograms_skip_the_agent(agent: Agent) -> None:
    child = Sleeper()
    per_process = agent.start("runqlat", ["-P"])["id"]
    per_cgroup = agent.start("runqlat", [])["id"]
    try:
        agent.wait_state(per_process, "running")
        agent.wait_state(per_cgroup, "running")
        switch_ins = child.run()
        life = child.switch_ins()  # since its fork
        done = time.time_ns()
        drops = _stop(agent, per_process)
        cgroup_drops = _stop(agent, per_cgroup)
        series = wait_for(lambda: _series(agent, per_process, done), 10, "the final read's samples")
        _check_count(_count_for(series, child.pid), switch_ins, drops)
        assert {s["labels"]["comm"] for s in series if s["labels"]["pid"] == str(child.pid)} == {child.name}
        # the agent's processes are not measured (nor labelled with their pids)
        own = {agent.proc.pid} | agent.worker_pids()
        assert not {int(s["labels"]["pid"]) for s in series} & own
        # Without -P: one histogram per cgroup, pid and comm empty; the child's cgroup holds
        # the child's waits only (at most all of its life's)
        by_cgroup = wait_for(lambda: _series(agent, per_cgroup, done), 10, "the per-cgroup histograms")
        assert {(s["labels"]["pid"], s["labels"]["comm"]) for s in by_cgroup} == {("", "")}
        assert len({s["labels"]["cgroup_id"] for s in by_cgroup}) == len(by_cgroup)
        in_cgroup = [s["value"] for s in by_cgroup if s["labels"]["cgroup_id"] == child.cgroup_id]
        assert len(in_cgroup) == 1 and switch_ins - cgroup_drops <= in_cgroup[0] <= life, (
            in_cgroup, switch_ins, life, cgroup_drops)
    finally:
        agent.request("DELETE", f"/instances/{per_process}")
        agent.request("DELETE", f"/instances/{per_cgroup}")
        child.close()


THREADED = r"""
import os, sys, threading, time
def work():
    tid = threading.get_native_id()
    with open(f"/proc/self/task/{tid}/comm", "w") as fh:
        fh.write(sys.argv[2])
    for _ in range(int(sys.argv[3])):
        time.sleep(0.001)
    os.write(1, b"%d\n" % tid)
    threading.Event().wait()
with open("/proc/self/comm", "w") as fh:
    fh.write(sys.argv[1])
os.write(1, b"ready\n")
os.read(0, 1)
threading.Thread(target=work, daemon=True).start()
os.read(0, 1)
"""


def _task_stat(pid: int, tid: int) -> tuple[bool, int]:
    """(asleep and switched out, switch-ins) of one thread."""
    with open(f"/proc/{pid}/task/{tid}/stat") as fh:
        state = fh.read().rsplit(")", 1)[1].split()[0]
    with open(f"/proc/{pid}/task/{tid}/wchan") as fh:
        wchan = fh.read()
    with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
        return state == "S" and wchan not in ("", "0"), int(fh.read().split()[2])


def test_threads_count_under_their_process(agent: Agent) -> None:
    """A thread the child starts after the tracer did is filtered and labelled by its process."""
    main_name, thread_name = unique("eu-rqm"), unique("eu-rqt")
    proc = subprocess.Popen([sys.executable, "-c", THREADED, main_name, thread_name, str(SLEEPS)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    inst = None
    try:
        assert proc.stdout.readline() == b"ready\n"
        wait_for(lambda: _task_stat(proc.pid, proc.pid)[0], 10, "the child to block")
        inst = agent.start("runqlat", {"pid": proc.pid, "pids": True})
        agent.wait_state(inst["id"], "running")
        main_before = _task_stat(proc.pid, proc.pid)[1]
        proc.stdin.write(b"x")
        proc.stdin.flush()
        tid = int(proc.stdout.readline())
        wait_for(lambda: _task_stat(proc.pid, tid)[0] and _task_stat(proc.pid, proc.pid)[0], 10,
                 "both threads to block")
        switch_ins = _task_stat(proc.pid, tid)[1] + _task_stat(proc.pid, proc.pid)[1] - main_before
        done = time.time_ns()
        drops = _stop(agent, inst["id"])
        series = wait_for(lambda: _series(agent, inst["id"], done), 10, "the final read's samples")
        # every series is the child's process, the thread's under its own comm
        assert {s["labels"]["pid"] for s in series} == {str(proc.pid)}
        by_comm = {s["labels"]["comm"]: s["value"] for s in series}
        assert by_comm.get(thread_name, 0) >= SLEEPS - drops
        _check_count(sum(by_comm.values()), switch_ins, drops)
    finally:
        if inst is not None:
            agent.request("DELETE", f"/instances/{inst['id']}")
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
