"""pagefaults: a child process writes to every page of a fresh anonymous mapping, once.

Each first write to a page of a private anonymous mapping is one user-mode fault (page
not present, write). The mapping is madvise(MADV_NOHUGEPAGE), so no fault maps more
than one page (no transparent huge pages of any size).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, cgroup_id_of, private_cgroup, wait_for

TRACER = "pagefaults"
PAGES = 2000
# Faults other than the PAGES writes, between the two reads of the counter: the child's
# interpreter reading "go", calling memset through ctypes and writing its reply. On this
# machine that is exactly 1, an instruction fetch (the first call into libc's memset code
# page), and never a write; a new allocator page or a little more stack could add a few
# on another system, so allow 16.
MARGIN = 16
X86_PF_PROT, X86_PF_WRITE, X86_PF_USER = 1 << 0, 1 << 1, 1 << 2

CHILD = r"""
import ctypes, mmap, sys
pages = int(sys.argv[1])
size = pages * mmap.PAGESIZE
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
address = ctypes.addressof(ctypes.c_char.from_buffer(m))
print(address, mmap.PAGESIZE, flush=True)
sys.stdin.readline()
ctypes.memset(address, 1, size)  # one write to every page
print("touched", flush=True)
sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("pagefaults"), tracers=[TRACER])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


class Child:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(PAGES)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.address, self.page_size = map(int, self.proc.stdout.readline().split())
        self.comm = Path(f"/proc/{self.pid}/comm").read_text().strip()

    def touch(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "touched"

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.wait(10) == 0
        self.proc.kill()
        self.proc.wait()


def _main_instance(agent: Agent) -> str:
    return next(i["id"] for i in agent.instances() if i["tracer"] == TRACER and not i["args"])


def _faults(agent: Agent, instance: str, pid: int, **labels: object) -> tuple[int, dict[str, float]]:
    """(time of the newest read, {access: count}) of one process in one instance (summed over
    its cgroups unless ``labels`` picks one)."""
    newest, counts = 0, {}
    for s in agent.latest("eunomia_pagefaults_faults_total", instance=instance, pid=pid, **labels):
        newest = max(newest, s["ts"])
        counts[s["labels"]["access"]] = counts.get(s["labels"]["access"], 0) + s["value"]
    return newest, counts


def _read_after(agent: Agent, instance: str, pid: int, moment: int) -> dict[str, float]:
    """The counts from a read that began after ``moment``: one stamped after a read that was."""
    first = wait_for(lambda: (r := _faults(agent, instance, pid))[0] > moment and r, 10, "a read after the moment")
    return wait_for(lambda: (r := _faults(agent, instance, pid))[0] > first[0] and r, 10, "the next read")[1]


def test_counter_rises_by_the_pages_written(agent: Agent) -> None:
    """The child is moved to a cgroup of its own before it writes: the writes are counted
    under that cgroup's id, and its faults before the move stay under its old cgroup."""
    instance = _main_instance(agent)
    child = Child()
    try:
        before = _read_after(agent, instance, child.pid, time.time_ns())  # the child waits: its count is still
        with private_cgroup() as cgroup:
            (cgroup / "cgroup.procs").write_text(str(child.pid))
            cgroup_id = os.stat(cgroup).st_ino
            child.touch()
            after = _read_after(agent, instance, child.pid, time.time_ns())
            moved = _faults(agent, instance, child.pid, cgroup_id=cgroup_id)[1]
            labels = {(s["labels"]["comm"], s["labels"]["cgroup_id"])
                      for s in agent.latest("eunomia_pagefaults_faults_total", instance=instance, pid=child.pid)}
            child.finish()
    finally:
        child.finish()
    assert labels == {(child.comm, str(cgroup_id_of(os.getpid()))), (child.comm, str(cgroup_id))}
    writes = after.get("write", 0) - before.get("write", 0)
    total = sum(after.values()) - sum(before.values())
    assert PAGES <= writes <= total <= PAGES + MARGIN, (before, after)
    assert PAGES <= moved.get("write", 0) <= sum(moved.values()) <= PAGES + MARGIN, moved
    assert sum(moved.values()) == total  # every fault since the move, and none before it
    assert agent.events(instance=instance) == []  # no per-fault events without --events


def test_events_option_reports_every_page_of_the_mapping(agent: Agent) -> None:
    child = Child()
    try:
        inst = agent.start(TRACER, ["--events", "-p", str(child.pid)])
        try:
            agent.wait_state(inst["id"], "running")
            child.touch()
            end = child.address + PAGES * child.page_size

            def inside() -> list[dict]:
                return [e for e in agent.events(instance=inst["id"]) if child.address <= e["address"] < end]

            events = wait_for(lambda: len(ev := inside()) >= PAGES and ev, 15, f"{PAGES} faults in the mapping")
            # One fault per page, every page, each a user-mode write to a page not present.
            assert sorted(e["address"] // child.page_size for e in events) == list(
                range(child.address // child.page_size, end // child.page_size))
            for e in events:
                assert (e["pid"], e["tid"], e["comm"]) == (child.pid, child.pid, child.comm)
                assert e["access"] == "write"
                assert e["error_code"] & (X86_PF_PROT | X86_PF_WRITE | X86_PF_USER) == X86_PF_WRITE | X86_PF_USER

            def consistent() -> list[dict] | None:
                # With -p, the instance counts only the child, and sends an event for each fault.
                stored = agent.events(instance=inst["id"])
                _, counts = _faults(agent, inst["id"], child.pid)
                return stored if sum(counts.values()) == len(stored) else None

            stored = wait_for(consistent, 15, "the counter to equal the events")
            assert {e["pid"] for e in stored} == {child.pid}
            series = [s for s in agent.get("/samples", name="eunomia_pagefaults_faults_total", latest=True)
                      if s["labels"]["instance"] == inst["id"]]
            assert {s["labels"]["pid"] for s in series} == {str(child.pid)}
        finally:
            assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
    finally:
        child.finish()
