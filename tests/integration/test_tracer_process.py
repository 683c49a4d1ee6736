"""process: exec and exit events against processes this test spawns."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.integration.agentctl import Agent, cgroup_id_of, enter_cgroup, private_cgroup, unique, wait_for


def _events_of(agent: Agent, pid: int, kind: str) -> list[dict]:
    return [e for e in agent.events(tracer="process", pid=pid) if e["event"] == kind]


def test_exec_and_exit_with_arguments_parent_and_status(agent: Agent, tmp_path: Path) -> None:
    name = unique("eu-proc")  # 15 characters at most: it is also the comm
    exe = tmp_path / name
    shutil.copy("/bin/sh", exe)
    args = ["-c", "exit 7", "arg1", "two words", "arg3", "arg4", "arg5", "arg6", "arg7", "arg8", "arg9"]
    child = subprocess.Popen([str(exe), *args])
    assert child.wait() == 7

    exec_ev = wait_for(lambda: _events_of(agent, child.pid, "exec"), 10, "the exec event")
    exit_ev = wait_for(lambda: _events_of(agent, child.pid, "exit"), 10, "the exit event")
    assert len(exec_ev) == 1 and len(exit_ev) == 1
    ex, ed = exec_ev[0], exit_ev[0]
    assert ex["comm"] == name
    assert ex["filename"] == str(exe)
    assert ex["argv"] == [str(exe), *args]
    assert ex["argc"] == 1 + len(args) and ex["args_truncated"] == 0
    assert ex["ppid"] == os.getpid()
    assert ex["uid"] == os.getuid()
    assert ed["comm"] == name and ed["exit_code"] == 7 and ed["exit_signal"] == 0
    assert 0 < ed["duration_ns"] < 10 * 10**9
    assert "exit_code" not in ex and "argv" not in ed  # fields only where they apply


def test_killed_process_reports_signal(agent: Agent, tmp_path: Path) -> None:
    exe = tmp_path / unique("eu-kill")
    shutil.copy("/bin/sleep", exe)
    child = subprocess.Popen([str(exe), "30"])
    wait_for(lambda: _events_of(agent, child.pid, "exec"), 10, "the exec event")
    child.send_signal(signal.SIGTERM)
    assert child.wait() == -signal.SIGTERM
    exit_ev = wait_for(lambda: _events_of(agent, child.pid, "exit"), 10, "the exit event")[0]
    assert exit_ev["exit_signal"] == signal.SIGTERM
    assert exit_ev["exit_code"] == 128 + signal.SIGTERM


def test_more_arguments_than_captured_are_flagged(agent: Agent) -> None:
    args = [f"a{i}" for i in range(30)]
    child = subprocess.run(["/bin/echo", *args], stdout=subprocess.DEVNULL, check=True)
    del child
    events = wait_for(lambda: [e for e in agent.events(tracer="process", comm="echo")
                               if e.get("argv", [None])[1:2] == ["a0"] and len(e["argv"]) == 20], 10, "the exec")
    assert events[0]["args_truncated"] == 1
    assert events[0]["argv"] == ["/bin/echo", *args[:19]]


def test_agent_does_not_trace_itself(agent: Agent) -> None:
    own = {agent.proc.pid} | agent.worker_pids()
    assert len(own) >= 4  # supervisor + three workers
    subprocess.run(["/bin/true"], check=True)
    wait_for(lambda: agent.events(tracer="process", comm="true"), 10, "an event from /bin/true")
    traced = {e["pid"] for e in agent.events()}
    assert not traced & own, f"agent processes traced: {traced & own}"


def test_pid_and_comm_filters_apply_in_kernel(agent: Agent, tmp_path: Path) -> None:
    name = unique("eu-filt")
    exe = tmp_path / name
    shutil.copy("/bin/sh", exe)
    inst = agent.start("process", ["-n", name])
    try:
        agent.wait_state(inst["id"], "running")
        subprocess.run([str(exe), "-c", "exit 3"], check=False)
        subprocess.run(["/bin/true"], check=True)
        mine = wait_for(lambda: agent.events(instance=inst["id"]), 10, "events of the filtered instance")
        wait_for(lambda: len(agent.events(instance=inst["id"])) >= 2, 10, "exec and exit")
        events = agent.events(instance=inst["id"])
        assert {e["comm"] for e in events} == {name}, mine
        assert sorted(e["event"] for e in events) == ["exec", "exit"]
    finally:
        assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204


def test_exec_counter_per_cgroup_and_comm(agent: Agent, tmp_path: Path) -> None:
    """Two execs of a program under a name of its own, from a cgroup of its own: exactly that
    series, with the cgroup's id (also in the exec events' header)."""
    name = unique("eu-cnt")
    exe = tmp_path / name
    shutil.copy("/bin/true", exe)
    instance = next(i["id"] for i in agent.instances() if i["tracer"] == "process" and not i["args"])
    with private_cgroup() as cgroup:
        pids = []
        for _ in range(2):
            child = subprocess.Popen([str(exe)], preexec_fn=enter_cgroup(cgroup))
            assert child.wait() == 0
            pids.append(child.pid)
        cgroup_id = os.stat(cgroup).st_ino
    assert cgroup_id != cgroup_id_of(os.getpid())

    def counts() -> dict[str, float]:
        return {s["labels"]["cgroup_id"]: s["value"]
                for s in agent.latest("eunomia_process_execs_total", instance=instance, comm=name)}

    assert wait_for(lambda: counts() == {str(cgroup_id): 2}, 10, "two execs counted under the cgroup")
    # events leave the worker at its flush, which may come after the counters' read
    execs = wait_for(lambda: len(e := [x for pid in pids for x in _events_of(agent, pid, "exec")]) >= 2 and e, 10,
                     "both exec events")
    assert [e["cgroup_id"] for e in execs] == [cgroup_id, cgroup_id]
