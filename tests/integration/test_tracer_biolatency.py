"""biolatency: O_DIRECT reads and writes this test issues to a loop device it set up.

The loop device (``losetup --direct-io=on`` over a temporary file) is ours alone. Every
request is 4 KiB, page-aligned, O_DIRECT, at an offset the test chose: one bio, one
request, issued in this process's context (loop devices have no I/O scheduler, so blk-mq
dispatches directly in the submitter's context), which the pid filter relies on.
"""

from __future__ import annotations

import mmap
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, joined_cgroup, private_cgroup, wait_for

BLOCK = 4096
WRITE_OFFSETS = [1 << 20, 3 << 20, 5 << 20, (5 << 20) + 8 * BLOCK, 7 << 20]  # 5 writes
READ_OFFSETS = [2 << 20, 4 << 20, 6 << 20]  # 3 reads


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("biolatency"), tracers=["biolatency"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    backing = tmp_path / "backing.img"
    with open(backing, "wb") as fh:
        fh.truncate(8 << 20)
    device = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(backing)],
                            check=True, capture_output=True, text=True).stdout.strip()
    try:
        rdev = os.stat(device).st_rdev
        yield device, os.major(rdev), os.minor(rdev)
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


def _do_io(device: str) -> None:
    buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT wants
    buf.write(b"\xa5" * BLOCK)
    fd = os.open(device, os.O_RDWR | os.O_DIRECT)
    try:
        for offset in WRITE_OFFSETS:
            assert os.pwritev(fd, [buf], offset) == BLOCK
        for offset in READ_OFFSETS:
            assert os.preadv(fd, [buf], offset) == BLOCK
    finally:
        os.close(fd)
        buf.close()


def _counts(agent: Agent, disk: str, instance: str | None = None, **labels: object) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in agent.latest("eunomia_biolatency_latency_seconds_count", disk=disk, **labels):
        if instance is None or s["labels"].get("instance") == instance:
            out[s["labels"]["op"]] = out.get(s["labels"]["op"], 0) + s["value"]
    return out


def test_requests_counted_per_disk_and_reported_with_events(agent: Agent, loop_device: tuple[str, int, int]) -> None:
    device, major, minor = loop_device
    disk = f"{major}:{minor}"
    default_id = agent.by_tracer("biolatency")["id"]
    inst = agent.start("biolatency", {"events": True, "pid": os.getpid(), "major": major, "minor": minor})
    try:
        agent.wait_state(inst["id"], "running")
        with private_cgroup() as cgroup, joined_cgroup(cgroup):  # submitted from a cgroup of the test's own
            cgroup_id = os.stat(cgroup).st_ino
            _do_io(device)
        expected = {"write": len(WRITE_OFFSETS), "read": len(READ_OFFSETS)}
        wait_for(lambda: _counts(agent, disk, inst["id"]) == expected, 10, f"{expected} requests on {disk}")
        assert _counts(agent, disk, inst["id"], cgroup_id=cgroup_id) == expected  # all of them in that cgroup

        def mine() -> list[dict]:
            return agent.events(instance=inst["id"])

        events = wait_for(lambda: len(mine()) >= len(WRITE_OFFSETS) + len(READ_OFFSETS) and mine(), 10,
                          "one event per request")
        seen = sorted((e["rwbs"][0], e["sector"], e["bytes"]) for e in events)
        assert seen == sorted([("W", o // 512, BLOCK) for o in WRITE_OFFSETS]
                              + [("R", o // 512, BLOCK) for o in READ_OFFSETS])
        assert all(e["disk"] == disk and e["error"] == 0 and e["latency_ns"] > 0 for e in events)
        assert {(e["pid"], e["tid"], e["cgroup_id"]) for e in events} == {(os.getpid(), os.getpid(), cgroup_id)}

        # The disk filter: this instance has series for the loop device only.
        series = agent.get("/samples", name="eunomia_biolatency_latency_seconds_count", latest=True)
        assert {s["labels"]["disk"] for s in series if s["labels"]["instance"] == inst["id"]} == {disk}
        # Its +Inf buckets hold exactly the requests made.
        buckets = [s for s in agent.get("/samples", name="eunomia_biolatency_latency_seconds_bucket", latest=True)
                   if s["labels"]["instance"] == inst["id"] and s["labels"]["le"] == "+Inf"]
        assert sum(s["value"] for s in buckets) == len(WRITE_OFFSETS) + len(READ_OFFSETS)
    finally:
        agent.request("DELETE", f"/instances/{inst['id']}")

    # The unfiltered instance counted them too, under the same cgroup, where nothing else
    # submits I/O to the device.
    expected = {"write": len(WRITE_OFFSETS), "read": len(READ_OFFSETS)}
    wait_for(lambda: _counts(agent, disk, default_id, cgroup_id=cgroup_id) == expected, 10,
             "the unfiltered instance's counts")
    # Without --events it sends no events.
    assert agent.events(instance=default_id) == []
