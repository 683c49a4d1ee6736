"""opensnoop: opens of paths this test chooses, with the fd and errno the test saw."""

from __future__ import annotations

import errno
import os
import threading
import uuid
from pathlib import Path

from tests.integration.agentctl import Agent, wait_for


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
