"""Events carry the cgroup v2 id of their task, and the index maps it back to the path."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.containers.cgroup_index import CgroupIndex, unified_root
from tests.integration.agentctl import Agent, wait_for


@pytest.fixture
def cgroup() -> Iterator[Path]:
    root = unified_root()
    assert root is not None, "no cgroup v2 hierarchy on this host"
    path = root / f"eunomia-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            (root / "cgroup.procs").write_text(pid)
        path.rmdir()


def test_event_cgroup_id_resolves_to_the_cgroup_the_test_made(tmp_path: Path, cgroup: Path) -> None:
    agent = Agent(tmp_path, tracers=["opensnoop"])
    try:
        agent.wait_running()
        marker = f"/tmp/eunomia-cgroup-{uuid.uuid4().hex}"
        child = subprocess.Popen(["/bin/sh", "-c", f"read go; cat {marker} 2>/dev/null; true"],
                                 stdin=subprocess.PIPE)
        (cgroup / "cgroup.procs").write_text(str(child.pid))
        child.communicate(b"go\n")
        events = wait_for(lambda: [e for e in agent.events(tracer="opensnoop") if e["path"] == marker], 10,
                          "the open of the marker")
    finally:
        agent.stop()
    index = CgroupIndex()
    root = unified_root()
    assert events[0]["cgroup_id"] == os.stat(cgroup).st_ino
    assert index.path(events[0]["cgroup_id"]) == "/" + str(cgroup.relative_to(root))


def test_a_cgroup_made_after_the_walk_is_found_by_file_handle_without_walking_again(cgroup: Path) -> None:
    index = CgroupIndex(min_rescan=3600)
    index.scan()
    scans = index.scans
    late = cgroup / "late"
    late.mkdir()
    try:
        assert index.path(os.stat(late).st_ino) == "/" + str(late.relative_to(unified_root()))
        assert index.scans == scans and index.handle_hits == 1
    finally:
        late.rmdir()
    assert index.path(os.stat(cgroup).st_ino + 10**9) is None  # no such cgroup: ESTALE, no walk either
    index.close()
