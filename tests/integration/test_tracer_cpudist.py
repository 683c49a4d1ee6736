"""cpudist: the on- and off-CPU times of a child that spins and sleeps in known slices.

Ground truth: the child blocks on a pipe while the tracer starts, then 20 times spins for
20 ms of its own CPU time (CLOCK_THREAD_CPUTIME_ID) and sleeps 10 ms, says it is done and
blocks again. The kernel's own accounting of the child, /proc/<pid>/schedstat read while
it is blocked before and after, gives its CPU time (first field, ns) and its switch-ins
(third field) in between. What the test asserts, whatever the load of the machine
(a spin may be cut into pieces by preemption):

* on-CPU count: one interval per switch-in, so at most the switch-ins and at least 21 of
  them (20 sleeps and the final block); fewer by at most the instance's kernel drops: on
  this kernel a sched_switch occasionally never reaches BPF programs (measured: 0-7 in
  200 switch-ins of such a child, all right after a switch away from the VM's init), and
  the tracer counts each interval that costs it as a drop (bpf/cpudist/program.bpf.c);
* on-CPU buckets: no interval reaches 2^25 ns (33.5 ms): the child never runs more than
  one 20 ms spin at a stretch; and the bucket upper bounds, plus 2^25 ns per drop, add up
  to at least the CPU time the kernel accounted to it (at least 20 × 20 ms);
* off-CPU (-O): each of the 20 sleeps keeps it off the CPU for at least 10 ms, so at
  least 20 intervals, less the drops, land in buckets from 2^23 ns (8.4 ms) up.
The histogram's ``_sum`` is a midpoint estimate and is not asserted on. The instances
are stopped before they are read, so their drops are final; each test starts its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from tests.integration.agentctl import Agent, cgroup_id_of, wait_for
from tests.integration.piped_child import PipedChild

SLICES = 20
SPIN_NS = 20_000_000
SLEEP_S = 0.010
CHILD = r"""
import os, sys, time
with open("/proc/self/comm", "w") as fh:
    fh.write(sys.argv[1])
os.write(1, b"ready\n")
os.read(0, 1)
for _ in range(int(sys.argv[2])):
    start = time.thread_time_ns()
    while time.thread_time_ns() - start < int(sys.argv[3]):
        pass
    time.sleep(float(sys.argv[4]))
os.write(1, b"done\n")
os.read(0, 1)
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("cpudist"), tracers=["cpudist"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


class Spinner(PipedChild):
    """The child, in a cgroup of its own (nothing else runs there)."""

    def __init__(self) -> None:
        super().__init__(CHILD, [str(SLICES), str(SPIN_NS), str(SLEEP_S)], "eu-cpu", "eunomia-cpudist")

    def run(self) -> tuple[int, int]:
        """Release the child for its slices; its CPU time and switch-ins meanwhile."""
        cpu0, ins0 = self.schedstat()
        self.step()
        cpu1, ins1 = self.schedstat()
        return cpu1 - cpu0, ins1 - ins0


Series = tuple[str, str, str]  # cgroup_id, pid, comm


def _slots(agent: Agent, metric: str, instance: str, since_ns: int) -> dict[Series, dict[int, float]]:
    """Per (cgroup_id, pid, comm) series: log2 slot → count (not cumulative), once the
    instance has sent a sample taken after ``since_ns``."""
    rows = [s for s in agent.get("/samples", name=f"eunomia_{metric}_bucket", latest=True,
                                               instance=instance, limit=100_000)
            if s["labels"].get("instance") == instance and s["labels"]["le"] != "+Inf"]
    if not any(s["ts"] > since_ns for s in rows):
        return {}
    cumulative: dict[Series, dict[int, float]] = {}
    for s in rows:
        slot = round(float(s["labels"]["le"]) * 1e9).bit_length() - 1  # le = 2**slot ns
        labels = s["labels"]
        cumulative.setdefault((labels["cgroup_id"], labels["pid"], labels["comm"]), {})[slot] = s["value"]
    out = {}
    for key, by_slot in cumulative.items():
        previous, counts = 0.0, {}
        for slot in sorted(by_slot):
            counts[slot] = by_slot[slot] - previous
            previous = by_slot[slot]
        out[key] = {slot: n for slot, n in counts.items() if n}
    return out


class Run(NamedTuple):
    child: Spinner  # closed
    instance: str
    cpu_ns: int
    switch_ins: int
    series: dict[Series, dict[int, float]]
    drops: int  # the instance's kernel drops, final


def _run(agent: Agent, args: Callable[[Spinner], list[str] | dict[str, Any]], metric: str) -> Run:
    """Start an instance with ``args(child)``, release a Spinner, stop the instance."""
    child = Spinner()
    inst = agent.start("cpudist", args(child))
    try:
        agent.wait_state(inst["id"], "running")
        cpu_ns, switch_ins = child.run()
        done = time.time_ns()
        agent.request("POST", f"/instances/{inst['id']}/stop")
        drops = agent.wait_state(inst["id"], "stopped")["drops"]["kernel"]
        series = wait_for(lambda: _slots(agent, metric, inst["id"], done), 10, "the final read's samples")
    finally:
        agent.request("DELETE", f"/instances/{inst['id']}")
        child.close()
    assert cpu_ns >= SLICES * SPIN_NS and switch_ins > SLICES
    return Run(child, inst["id"], cpu_ns, switch_ins, series, drops)


def _check_oncpu(slots: dict[int, float], cpu_ns: int, switch_ins: int, drops: int) -> None:
    """One interval per switch-in, less one per drop; none of 2^25 ns or more; and the
    bucket bounds (2^25 ns for each dropped interval) cover the CPU time."""
    assert switch_ins - drops <= sum(slots.values()) <= switch_ins, (switch_ins, drops, slots)
    assert max(slots) <= 25, slots  # every interval below 2**25 ns = 33.5 ms
    assert sum(n * 2**slot for slot, n in slots.items()) + drops * 2**25 >= cpu_ns, (cpu_ns, drops, slots)


def test_on_cpu_slices_of_a_spinning_child(agent: Agent) -> None:
    run = _run(agent, lambda child: {"pid": child.pid, "pids": True}, "cpudist_oncpu_seconds")
    child = run.child
    # the pid filter: the child only, under its cgroup and comm
    assert list(run.series) == [(child.cgroup_id, str(child.pid), child.name)]
    _check_oncpu(run.series[(child.cgroup_id, str(child.pid), child.name)], run.cpu_ns, run.switch_ins, run.drops)


def test_off_cpu_option(agent: Agent) -> None:
    run = _run(agent, lambda child: ["-O", "-P", "-p", str(child.pid)], "cpudist_offcpu_seconds")
    child = run.child
    # the cgroup recorded at the switch-out (at the switch-in, the previous task is current)
    assert list(run.series) == [(child.cgroup_id, str(child.pid), child.name)]
    slots = run.series[(child.cgroup_id, str(child.pid), child.name)]
    # switched out before the tracer started: the first switch-in closes no interval
    assert sum(slots.values()) <= run.switch_ins - 1
    long_ones = sum(n for slot, n in slots.items() if slot >= 24)  # ≥ 2**23 ns = 8.4 ms
    assert long_ones >= SLICES - run.drops, (run.drops, slots)
    # -O measures off-CPU time only
    on = [s for s in agent.get("/samples", name="eunomia_cpudist_oncpu_seconds_count", latest=True,
                                instance=run.instance)
          if s["labels"]["instance"] == run.instance]
    offcpu = [s for s in agent.get("/samples", name="eunomia_cpudist_offcpu_seconds_count", latest=True,
                                    instance=run.instance)
              if s["labels"]["instance"] == run.instance]
    assert on == [] and offcpu


def test_default_is_one_histogram_per_cgroup(agent: Agent) -> None:
    """Without -P: one histogram per cgroup, pid and comm empty; the child's cgroup has the
    child's intervals only, and the agent's processes are not measured."""
    run = _run(agent, lambda child: [], "cpudist_oncpu_seconds")
    assert {(pid, comm) for _, pid, comm in run.series} == {("", "")}
    assert str(cgroup_id_of(os.getpid())) in {cgroup for cgroup, _, _ in run.series}
    _check_oncpu(run.series[(run.child.cgroup_id, "", "")], run.cpu_ns, run.switch_ins, run.drops)
    # the agent's processes are not measured (checked with -P)
    inst = agent.start("cpudist", ["-P"])
    try:
        agent.wait_state(inst["id"], "running")
        since = time.time_ns()
        per_pid = wait_for(lambda: _slots(agent, "cpudist_oncpu_seconds", inst["id"], since), 10, "a sample")
        own = {agent.proc.pid} | agent.worker_pids()
        assert per_pid and not {int(pid) for _, pid, _ in per_pid} & own
    finally:
        agent.request("DELETE", f"/instances/{inst['id']}")
