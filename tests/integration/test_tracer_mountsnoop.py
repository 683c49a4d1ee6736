"""mountsnoop: a tmpfs this test mounts on a directory it created and unmounts, and calls that fail."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, joined_cgroup, private_cgroup, unique, wait_for

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
LIBC.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str, target: Path, fstype: str, flags: int, data: str) -> int:
    """mount(2); 0 or the errno."""
    rc = LIBC.mount(source.encode(), str(target).encode(), fstype.encode(), flags, data.encode())
    return 0 if rc == 0 else ctypes.get_errno()


def umount2(target: Path, flags: int) -> int:
    rc = LIBC.umount2(str(target).encode(), flags)
    return 0 if rc == 0 else ctypes.get_errno()


def mounted(target: Path) -> bool:
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == str(target) for line in fh)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("mountsnoop"), tracers=["mountsnoop"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def test_tmpfs_mount_umount_and_failures(agent: Agent, tmp_path: Path) -> None:
    me, tid = os.getpid(), threading.get_native_id()
    target = tmp_path / "mnt"
    target.mkdir()
    missing = tmp_path / "no-such-dir" / "mnt"
    source = unique("eu-src")
    options = "size=1m,mode=0700"
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    assert mount(source, target, "tmpfs", flags, options) == 0
    try:
        assert mounted(target)
        assert mount(source, missing, "tmpfs", 0, "") == errno.ENOENT
    finally:
        assert umount2(target, MNT_DETACH) == 0
    assert not mounted(target)
    assert umount2(target, 0) == errno.EINVAL  # no longer a mount point

    def events() -> list[dict]:
        mine = [e for e in agent.events(tracer="mountsnoop", pid=me) if e["target"] in (str(target), str(missing))]
        return sorted(mine, key=lambda e: e["ts"])

    # The failed umount came last: once it is stored, so are the others.
    wait_for(lambda: any(e["errno"] == errno.EINVAL for e in events()), 10, "the last umount")
    got = [(e["call"], e.get("source"), e["target"], e.get("fstype"), e["flags"], e.get("data"), e["errno"])
           for e in events()]
    assert got == [
        ("mount", source, str(target), "tmpfs", flags, options, 0),
        ("mount", source, str(missing), "tmpfs", 0, "", errno.ENOENT),
        ("umount", None, str(target), None, MNT_DETACH, None, 0),
        ("umount", None, str(target), None, 0, None, errno.EINVAL),
    ]
    assert {(e["pid"], e["tid"], e["uid"]) for e in events()} == {(me, tid, os.getuid())}


def test_failed_option_with_exact_counter(agent: Agent, tmp_path: Path) -> None:
    """-p this process -x: only failed calls are events; the counter has every call of this
    process, under the cgroup it calls from (one of its own for the mounts, another for the
    umounts)."""
    me = os.getpid()
    target = tmp_path / "mnt"
    target.mkdir()
    missing = tmp_path / "missing"
    inst = agent.start("mountsnoop", ["-p", str(me), "-x"])
    try:
        agent.wait_state(inst["id"], "running")
        with private_cgroup() as mounts, private_cgroup() as umounts:
            ids = str(os.stat(mounts).st_ino), str(os.stat(umounts).st_ino)
            with joined_cgroup(mounts):
                assert mount(unique("eu-src"), target, "tmpfs", 0, "size=1m") == 0
            try:
                with joined_cgroup(mounts):
                    for _ in range(2):
                        assert mount("none", missing, "tmpfs", 0, "") == errno.ENOENT
            finally:
                with joined_cgroup(umounts):
                    assert umount2(target, 0) == 0
            with joined_cgroup(umounts):
                assert umount2(target, 0) == errno.EINVAL

        def counters() -> dict[tuple[str, str, str], float]:
            return {(s["labels"]["cgroup_id"], s["labels"]["call"], s["labels"]["errno"]): s["value"]
                    for s in agent.latest("eunomia_mountsnoop_calls_total", instance=inst["id"])}

        want = {(ids[0], "mount", "0"): 1, (ids[0], "mount", str(errno.ENOENT)): 2, (ids[1], "umount", "0"): 1,
                (ids[1], "umount", str(errno.EINVAL)): 1}
        assert wait_for(lambda: counters() == want and want, 10, f"the counters to reach {want}") == want
        events = wait_for(lambda: len(agent.events(instance=inst["id"])) >= 3 and agent.events(instance=inst["id"]),
                          10, "the three failed calls")
        assert sorted((e["call"], e["target"], e["errno"]) for e in events) == [
            ("mount", str(missing), errno.ENOENT), ("mount", str(missing), errno.ENOENT),
            ("umount", str(target), errno.EINVAL)]
        assert {e["pid"] for e in events} == {me}
    finally:
        assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
