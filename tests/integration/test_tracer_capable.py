"""capable: the CAP_CHOWN check of a chown(1) this test runs as root, allowed, and again with
CAP_CHOWN dropped from the bounding set (setpriv), denied."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, enter_cgroup, private_cgroup, unique, wait_for

CAP_CHOWN = 0
SETPRIV = shutil.which("setpriv")
CHOWN = shutil.which("chown")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("capable"), tracers=["capable"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def chown_tool(tmp_path: Path) -> tuple[str, Path]:
    """chown(1) under a name no other process has (it becomes the comm), and a root-owned file."""
    assert SETPRIV and CHOWN, "setpriv and chown (util-linux, coreutils) are needed"
    name = unique("eu-cap")
    link = tmp_path / name
    link.symlink_to(CHOWN)
    target = tmp_path / "file"
    target.write_text("x")
    os.chown(target, 0, 0)
    return name, link


def _run(argv: list[str], cgroup: Path | None = None) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(argv, stderr=subprocess.DEVNULL, preexec_fn=cgroup and enter_cgroup(cgroup))
    child.wait(30)
    return child


def allowed_chown(link: Path, uid: int, cgroup: Path | None = None) -> int:
    """Root changes the owner of a file: the kernel checks CAP_CHOWN, which root has."""
    child = _run([str(link), str(uid), str(link.parent / "file")], cgroup)
    assert child.returncode == 0
    assert (link.parent / "file").stat().st_uid == uid
    return child.pid


def denied_chown(link: Path, uid: int, cgroup: Path | None = None) -> int:
    """The same without CAP_CHOWN in the bounding set (so not in the effective set after exec):
    the check fails and chown(2) returns EPERM. setpriv execs chown in the same process."""
    before = (link.parent / "file").stat().st_uid
    child = _run([str(SETPRIV), "--inh-caps=-all", "--bounding-set=-chown", str(link), str(uid),
                  str(link.parent / "file")], cgroup)
    assert child.returncode == 1
    assert (link.parent / "file").stat().st_uid == before != uid
    return child.pid


def _chown_checks(agent: Agent, **filters: object) -> list[dict]:
    return [e for e in agent.events(**filters) if e["cap"] == CAP_CHOWN]


def test_allowed_and_denied_cap_chown(agent: Agent, chown_tool: tuple[str, Path]) -> None:
    name, link = chown_tool
    ok_pid = allowed_chown(link, 1000)
    denied_pid = denied_chown(link, 1001)
    last_pid = allowed_chown(link, 1002)  # once its check is stored, so are the earlier ones
    wait_for(lambda: _chown_checks(agent, tracer="capable", pid=last_pid), 10, "the last CAP_CHOWN check")

    ok = _chown_checks(agent, tracer="capable", pid=ok_pid)
    denied = _chown_checks(agent, tracer="capable", pid=denied_pid)
    assert [(e["cap_name"], e["result"], e["comm"], e["uid"], e["tid"]) for e in ok] == [
        ("CAP_CHOWN", "allowed", name, 0, ok_pid)]
    assert [(e["cap_name"], e["result"], e["comm"], e["uid"], e["tid"]) for e in denied] == [
        ("CAP_CHOWN", "denied", name, 0, denied_pid)]


def test_cap_and_denied_options_with_exact_counter(agent: Agent, chown_tool: tuple[str, Path]) -> None:
    """-n <our chown's comm> --cap 0 --denied: only its denied CAP_CHOWN checks are events; the
    counter has all its CAP_CHOWN checks (setpriv's own checks, under its own comm, are not),
    under the cgroup of the chowns (one of their own, and one of another)."""
    name, link = chown_tool
    inst = agent.start("capable", ["-n", name, "--cap", str(CAP_CHOWN), "--denied"])
    try:
        agent.wait_state(inst["id"], "running")
        with private_cgroup() as first, private_cgroup() as second:
            allowed_chown(link, 1000, first)
            allowed_chown(link, 1001, second)
            denied_pid = denied_chown(link, 1002, first)
            ids = str(os.stat(first).st_ino), str(os.stat(second).st_ino)

        def counters() -> dict[tuple[str, str, str], float]:
            return {(s["labels"]["cgroup_id"], s["labels"]["cap"], s["labels"]["result"]): s["value"]
                    for s in agent.latest("eunomia_capable_checks_total", instance=inst["id"])}

        want = {(ids[0], "CAP_CHOWN", "allowed"): 1, (ids[1], "CAP_CHOWN", "allowed"): 1,
                (ids[0], "CAP_CHOWN", "denied"): 1}
        assert wait_for(lambda: counters() == want and want, 10, f"the counters to reach {want}") == want
        events = wait_for(lambda: agent.events(instance=inst["id"]), 10, "the denied check")
        assert [(e["pid"], e["comm"], e["cap"], e["result"], e["cgroup_id"]) for e in events] == [
            (denied_pid, name, CAP_CHOWN, "denied", int(ids[0]))]
    finally:
        assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
