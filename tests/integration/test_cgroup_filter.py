"""The cgroup filter runs in the kernel: --cgroup lets through exactly the tasks in that
cgroup v2 directory and below it (containers: see test_containers_docker.py)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.containers.cgroup_index import unified_root
from tests.integration.agentctl import Agent, wait_for


def _evacuate(root: Path, path: Path) -> None:
    for child in sorted((p for p in path.iterdir() if p.is_dir()), reverse=True):
        _evacuate(root, child)
    for pid in (path / "cgroup.procs").read_text().split():
        (root / "cgroup.procs").write_text(pid)
    path.rmdir()


@pytest.fixture
def cgroup() -> Iterator[Path]:
    root = unified_root()
    assert root is not None, "no cgroup v2 hierarchy on this host"
    path = root / f"eunomia-filter-{uuid.uuid4().hex[:8]}"
    (path / "inner").mkdir(parents=True)
    try:
        yield path
    finally:
        _evacuate(root, path)


def _open_in(cgroup: Path | None, marker: str) -> int:
    """A shell that opens `marker` after it was moved into `cgroup` (None: stays where it is)."""
    child = subprocess.Popen(["/bin/sh", "-c", f"read go; exec cat {marker} 2>/dev/null"], stdin=subprocess.PIPE)
    if cgroup is not None:
        (cgroup / "cgroup.procs").write_text(str(child.pid))
    child.communicate(b"go\n")
    return child.pid


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("cgroup-filter"), tracers=[])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def test_only_tasks_in_the_cgroup_and_below_pass(agent: Agent, cgroup: Path) -> None:
    root = unified_root()
    assert root is not None
    inst = agent.start("opensnoop", ["--cgroup", "/" + cgroup.name])
    agent.wait_state(inst["id"], "running")
    tag = uuid.uuid4().hex
    inside, below, outside = (f"/tmp/eunomia-filter-{tag}-{where}" for where in ("in", "below", "out"))
    pids = {_open_in(cgroup, inside): inside, _open_in(cgroup / "inner", below): below,
            _open_in(None, outside): outside}
    last = _open_in(cgroup, inside + "-last")  # once this one is there, the others were processed

    def mine() -> list[dict] | None:
        events = [e for e in agent.events(tracer="opensnoop", instance=inst["id"]) if tag in e["path"]]
        return events if any(e["pid"] == last for e in events) else None

    events = wait_for(mine, 15, "the open of the last marker")
    seen = {(e["pid"], e["path"]) for e in events}
    assert seen == {(pid, path) for pid, path in pids.items() if path != outside} | {(last, inside + "-last")}
    assert {e["cgroup_id"] for e in events} == {os.stat(cgroup).st_ino, os.stat(cgroup / "inner").st_ino}
    info = agent.get(f"/instances/{inst['id']}")
    assert info["cgroup_filter"] == {"selects": f"cgroup '/{cgroup.name}'", "cgroups": 1}
    assert info["worker"]["filter_cgroups"] == 1


def test_a_cgroup_that_does_not_exist_is_refused(agent: Agent) -> None:
    response = agent.request("POST", "/instances", json={"tracer": "opensnoop",
                                                         "args": ["--cgroup", "/eunomia-no-such-cgroup"]})
    assert response.status_code == 400
    assert "--cgroup: no cgroup '/eunomia-no-such-cgroup'" in response.json()["detail"]


def test_host_cannot_be_combined_with_a_container(agent: Agent) -> None:
    response = agent.request("POST", "/instances", json={"tracer": "opensnoop",
                                                         "args": ["--host", "--container", "web"]})
    assert response.status_code == 400
    assert "--host (host processes only) cannot be combined with --container" in response.json()["detail"]


def test_a_host_process_in_its_own_namespaces_carries_them(agent: Agent) -> None:
    """A 'container' made by a tool the agent does not know (unshare): host cgroup, own namespaces."""
    inst = agent.start("process", ["-n", "sleep"])
    agent.wait_state(inst["id"], "running")
    mark = f"3.{uuid.uuid4().int % 10**9:09d}"  # sleep's argument doubles as the marker
    proc = subprocess.Popen(["unshare", "--mount", "--net", "sleep", mark])
    try:
        def exec_event() -> list[dict]:
            return [e for e in agent.events(tracer="process", instance=inst["id"], pid=proc.pid)
                    if e["event"] == "exec" and e["argv"] == ["sleep", mark]]

        (event,) = wait_for(exec_event, 15, "the exec of sleep in its own namespaces")
        mnt, net, pidns = (os.stat(f"/proc/{proc.pid}/ns/{kind}").st_ino for kind in ("mnt", "net", "pid"))
        host_mnt = os.stat("/proc/self/ns/mnt").st_ino
    finally:
        proc.kill()
        proc.wait()
    assert mnt != host_mnt
    assert event["container_runtime"] == "host"
    assert (event["container_mntns"], event["container_netns"], event["container_pidns"]) == (mnt, net, pidns)
