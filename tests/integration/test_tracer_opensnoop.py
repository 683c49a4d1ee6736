"""opensnoop: opens of paths this test chooses, with the fd and errno the test saw."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from tests.integration.agentctl import Agent, cgroup_id_of, private_cgroup, wait_for

OPENER = r"""
import os, sys
os.write(1, b"ready\n")
os.read(0, 1)
for _ in range(int(sys.argv[1])):
    try:
        os.open(sys.argv[3], os.O_RDONLY)
    except FileNotFoundError:
        pass
for _ in range(int(sys.argv[2])):
    os.close(os.open(sys.argv[4], os.O_RDONLY))
os._exit(0)
"""


def test_missing_and_existing_paths(agent: Agent, tmp_path: Path) -> None:
    missing = f"/tmp/eunomia-missing-{uuid.uuid4().hex}"
    existing = tmp_path / f"present-{uuid.uuid4().hex}"
    staging = tmp_path / "staging"
    staging.write_text("x")
    staging.rename(existing)  # so that the only open of `existing` is ours
    try:
        os.open(missing, os.O_RDONLY)
    except FileNotFoundError:
        pass
    fd = os.open(existing, os.O_RDONLY | os.O_CLOEXEC)
    os.close(fd)
    tid = threading.get_native_id()

    def find(path: str) -> list[dict]:
        return [e for e in agent.events(tracer="opensnoop", pid=os.getpid()) if e["path"] == path]

    miss = wait_for(lambda: find(missing), 10, "the failed open")
    hit = wait_for(lambda: find(str(existing)), 10, "the successful open")
    assert len(miss) == 1 and len(hit) == 1
    assert miss[0]["fd"] == -1 and miss[0]["errno"] == errno.ENOENT
    assert hit[0]["fd"] == fd and hit[0]["errno"] == 0
    assert hit[0]["flags"] & os.O_CLOEXEC and hit[0]["flags"] & os.O_ACCMODE == os.O_RDONLY
    assert miss[0]["tid"] == hit[0]["tid"] == tid


def test_failed_only_option(agent: Agent, tmp_path: Path) -> None:
    inst = agent.start("opensnoop", {"failed": True, "pid": os.getpid()})
    try:
        agent.wait_state(inst["id"], "running")
        ok_path = tmp_path / "ok"
        ok_path.write_text("x")
        bad_path = tmp_path / "does-not-exist"
        os.close(os.open(ok_path, os.O_RDONLY))
        try:
            os.open(bad_path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        events = wait_for(lambda: agent.events(instance=inst["id"]), 10, "the failed open")
        paths = {e["path"] for e in agent.events(instance=inst["id"])}
        assert str(bad_path) in paths and str(ok_path) not in paths
        assert all(e["errno"] != 0 and e["pid"] == os.getpid() for e in events)
    finally:
        agent.request("DELETE", f"/instances/{inst['id']}")


def test_counter_per_cgroup_of_the_opening_task(agent: Agent, tmp_path: Path) -> None:
    """A child moved into a cgroup of its own once it has started (its interpreter's own opens
    are before that) fails 3 opens and succeeds 2: exactly its cgroup's series."""
    missing = f"/tmp/eunomia-missing-{uuid.uuid4().hex}"
    existing = tmp_path / "present"
    existing.write_text("x")
    instance = next(i["id"] for i in agent.instances() if i["tracer"] == "opensnoop" and not i["args"])
    with private_cgroup() as cgroup:
        child = subprocess.Popen([sys.executable, "-c", OPENER, "3", "2", missing, str(existing)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        (cgroup / "cgroup.procs").write_text(str(child.pid))
        cgroup_id = cgroup_id_of(child.pid)
        assert cgroup_id == os.stat(cgroup).st_ino
        child.communicate(b"x")
        assert child.returncode == 0

        def counts() -> dict[str, float]:
            return {s["labels"]["errno"]: s["value"]
                    for s in agent.latest("eunomia_opensnoop_opens_total", instance=instance, cgroup_id=cgroup_id)}

        want = {str(errno.ENOENT): 3, "0": 2}
        assert wait_for(lambda: counts() == want and want, 10, f"the cgroup's counters to reach {want}") == want
        # events leave the worker at its flush, which may come after the counters' read
        events = wait_for(lambda: len(e := [x for x in agent.events(tracer="opensnoop", pid=child.pid)
                                            if x["path"] in (missing, str(existing))]) >= 5 and e, 10, "the five opens")
        assert len(events) == 5 and {e["cgroup_id"] for e in events} == {cgroup_id}
