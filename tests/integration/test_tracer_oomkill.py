"""oomkill: real OOM kills of children this test confines to a 64 MiB memory cgroup.

The host has cgroup v1 controllers (the v2 hierarchy has no memory controller), so the
test makes its own v1 memory cgroup (unique name, under this process's own memory
cgroup), limits memory and memory+swap to 64 MiB, and starts children inside it that
touch 256 MiB. The memory-cgroup OOM killer must kill each one with SIGKILL; the
victim is the child (the only task in the cgroup), and the task that triggered the kill
is the child too (its own page fault failed the charge).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, cgroup_id_of, enter_cgroup, private_cgroup, unique, wait_for

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
LIMIT = 64 << 20
OOM_SCORE_ADJ = 789  # set by the child on itself: an exact value to find in the event

# A shell joins the cgroup and execs the child (same pid), so that all of the child's
# memory is charged to the cgroup (v1 does not move charges with a task). The child
# names itself, sets its oom_score_adj, says it is ready, waits for the go, then touches
# far more memory than the cgroup allows.
JOIN = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
CHILD = r"""
import os, sys
name, adj = sys.argv[1], sys.argv[2]
with open("/proc/self/comm", "w") as fh:
    fh.write(name)
with open("/proc/self/oom_score_adj", "w") as fh:
    fh.write(adj)
os.write(1, b"ready\n")
os.read(0, 1)
hog = b"\x01" * (int(sys.argv[3]) << 20)
os.write(1, b"survived\n")
os.read(0, 1)
"""
# Touches its memory at once, says so, and waits to be killed.
HOLDER = r"""
import os, sys
name, adj = sys.argv[1], sys.argv[2]
with open("/proc/self/comm", "w") as fh:
    fh.write(name)
with open("/proc/self/oom_score_adj", "w") as fh:
    fh.write(adj)
hog = b"\x01" * (int(sys.argv[3]) << 20)
os.write(1, b"holding\n")
os.read(0, 1)
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("oomkill"), tracers=["oomkill"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _own_memory_cgroup() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return MEMORY_ROOT / path.lstrip("/")
    return MEMORY_ROOT


@pytest.fixture
def cgroup() -> Iterator[Path]:
    assert (MEMORY_ROOT / "memory.limit_in_bytes").is_file(), "no cgroup v1 memory controller"
    path = _own_memory_cgroup() / unique("eu-oom")
    path.mkdir()
    try:
        (path / "memory.limit_in_bytes").write_text(str(LIMIT))
        if (path / "memory.memsw.limit_in_bytes").exists():
            (path / "memory.memsw.limit_in_bytes").write_text(str(LIMIT))
        yield path
    finally:
        for pid in filter(None, (path / "cgroup.procs").read_text().split()):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while True:
            try:
                path.rmdir()
                break
            except OSError:  # EBUSY until the killed tasks are gone
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


class Hog:
    """A child parked in the memory cgroup (and, given ``v2``, in that cgroup v2 directory);
    ``release()`` makes it allocate ``mib`` MiB and be OOM-killed."""

    def __init__(self, cgroup: Path, v2: Path | None = None, adj: int = OOM_SCORE_ADJ, mib: int = 256,
                 program: str = CHILD, ready: bytes = b"ready\n") -> None:
        self.name = unique("eu-oom")
        self.proc = subprocess.Popen(["/bin/sh", "-c", JOIN, str(cgroup),
                                      sys.executable, "-c", program, self.name, str(adj), str(mib)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     preexec_fn=v2 and enter_cgroup(v2))
        assert self.proc.stdout is not None and self.proc.stdout.readline() == ready
        self.pid = self.proc.pid
        self.cgroup_id = str(cgroup_id_of(self.pid))

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"x")
        self.proc.stdin.flush()
        try:
            assert self.proc.wait(30) == -signal.SIGKILL, "the child was not OOM-killed"
        finally:
            self.close()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _kills(agent: Agent, comm: str, instance: str | None = None) -> float | None:
    for s in agent.get("/samples", name="eunomia_oomkill_kills_total", latest=True):
        if s["labels"].get("comm") == comm and (instance is None or s["labels"].get("instance") == instance):
            return s["value"]
    return None


def _kills_by_cgroup(agent: Agent, comm: str) -> dict[str, float]:
    return {s["labels"]["cgroup_id"]: s["value"] for s in agent.latest("eunomia_oomkill_kills_total", comm=comm)}


def test_oom_kill_in_a_memory_cgroup(agent: Agent, cgroup: Path) -> None:
    with private_cgroup() as v2:
        hog = Hog(cgroup, v2)
        hog.release()

    def victim_events() -> list[dict]:
        return [e for e in agent.events(tracer="oomkill") if e["tpid"] == hog.pid]

    events = wait_for(victim_events, 10, f"the OOM kill of {hog.pid}")
    assert len(events) == 1
    e = events[0]
    assert e["tcomm"] == hog.name
    assert e["tuid"] == os.getuid()
    assert e["oom_score_adj"] == OOM_SCORE_ADJ
    # The child's own page fault failed the cgroup charge: it is also the trigger.
    assert (e["pid"], e["tid"], e["comm"]) == (hog.pid, hog.pid, hog.name)
    # All of the child's memory since its exec is charged to the cgroup and most of it is
    # the hog, anonymous; the charge never exceeds the limit (1 MiB of slack for the
    # kernel's per-CPU RSS counters).
    assert LIMIT // 2 < e["anon_rss_bytes"] <= LIMIT + (1 << 20)
    assert e["total_vm_bytes"] >= e["anon_rss_bytes"] + e["file_rss_bytes"] + e["shmem_rss_bytes"]
    assert e["pgtables_bytes"] > 0
    assert wait_for(lambda: _kills(agent, hog.name) == 1, 10, "the kill counter to reach 1")
    assert _kills_by_cgroup(agent, hog.name) == {hog.cgroup_id: 1}


def test_victim_killed_by_another_tasks_charge_is_counted_in_its_own_cgroup(agent: Agent, cgroup: Path) -> None:
    """Two processes share the memory cgroup, each in a cgroup v2 directory of its own: the
    holder touches 40 MiB (oom_score_adj 1000: the limit's worth of extra badness), then the
    trigger (oom_score_adj 0; lowering it needs CAP_SYS_RESOURCE) 40 MiB more. The
    trigger's charge fails, the kernel chooses the holder: the event's header is the
    trigger, and the holder's kill is counted under the holder's cgroup (it exits in its
    own context)."""
    with private_cgroup() as holder_v2, private_cgroup() as trigger_v2:
        holder = Hog(cgroup, holder_v2, adj=1000, mib=40, program=HOLDER, ready=b"holding\n")
        trigger = Hog(cgroup, trigger_v2, adj=0, mib=40)
        try:
            assert trigger.proc.stdin is not None and trigger.proc.stdout is not None
            trigger.proc.stdin.write(b"x")
            trigger.proc.stdin.flush()
            assert trigger.proc.stdout.readline() == b"survived\n"  # once the holder is gone
            assert holder.proc.wait(30) == -signal.SIGKILL
        finally:
            holder.close()
            trigger.close()
    events = wait_for(lambda: [e for e in agent.events(tracer="oomkill") if e["tpid"] == holder.pid], 10,
                      f"the OOM kill of {holder.pid}")
    assert [(e["tcomm"], e["pid"], e["comm"], e["cgroup_id"]) for e in events] == [
        (holder.name, trigger.pid, trigger.name, int(trigger.cgroup_id))]
    assert wait_for(lambda: _kills_by_cgroup(agent, holder.name) == {holder.cgroup_id: 1}, 10,
                    "the holder's kill counted under its own cgroup")
    assert holder.cgroup_id != trigger.cgroup_id


def test_pid_filter_selects_the_victim(agent: Agent, cgroup: Path) -> None:
    target, other = Hog(cgroup), None
    inst = agent.start("oomkill", {"pid": target.pid})
    try:
        agent.wait_state(inst["id"], "running")
        other = Hog(cgroup)
        other.release()  # not the filtered pid: the filtered instance must not see it
        target.release()
        mine = wait_for(lambda: agent.events(instance=inst["id"]), 10, "the filtered instance's event")
        assert [(e["tpid"], e["tcomm"]) for e in mine] == [(target.pid, target.name)]
        # the unfiltered instance saw both kills
        wait_for(lambda: {e["tpid"] for e in agent.events(tracer="oomkill")} >= {target.pid, other.pid}, 10,
                 "both kills in the unfiltered instance")
        assert wait_for(lambda: _kills(agent, target.name, inst["id"]) == 1, 10, "the filtered counter")
        assert _kills(agent, other.name, inst["id"]) is None
    finally:
        agent.request("DELETE", f"/instances/{inst['id']}")
        for hog in (target, other):
            if hog is not None and hog.proc.poll() is None:
                hog.proc.kill()
                hog.proc.wait()
