"""files: exact bytes and operations of a child process this test runs, per file it opens.

The child waits for a byte on stdin before doing its I/O, so the tracer is attached by
then; every read and write it does is a plain system call (os.read, os.write, …) whose
return value the child checks, so the byte counts are exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, cgroup_id_of, compile_c, private_cgroup, wait_for

TRACER = "files"

# fd = open(path); write 3 × 1000; read 2 × 500; close. Then on a second file: pwrite,
# writev, write through an os.dup() copy (fcntl F_DUPFD_CLOEXEC) and an os.dup2() copy,
# pread, readv. Finally a write to /dev/null (left out without -a).
# Opens `closed` (close-on-exec, Python's default) and `kept` (made inheritable with
# ioctl(FIONCLEX), as os.set_inheritable does), writes to both, then execs AFTER_EXEC.
EXEC_CHILD = r"""
import os, sys
closed_path, kept_path, program = sys.argv[1:4]
assert os.read(0, 1) == b"g"
closed = os.open(closed_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
kept = os.open(kept_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
print(closed, flush=True)
os.set_inheritable(kept, True)
assert os.write(closed, b"c" * 3) == 3 and os.write(kept, b"k" * 4) == 4
os.execv(program, [program, str(closed), str(kept)])
"""

# A static program (no loader opening libraries): `closed` was closed by the exec, and a
# pipe gets its number back. Reads of that pipe must not be taken for the old file.
AFTER_EXEC = r"""
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int closed = atoi(argv[1]), kept = atoi(argv[2]), p[2];
    char buf[8];
    if (pipe(p) != 0 || p[0] != closed)
        return 2;
    if (write(p[1], "abcde", 5) != 5 || read(p[0], buf, 5) != 5)
        return 3;
    if (write(kept, "kkkkkkk", 7) != 7)
        return 4;
    return 0;
}
"""

IO_CHILD = r"""
import os, sys
path, path2 = sys.argv[1], sys.argv[2]
assert os.read(0, 1) == b"g"
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
for _ in range(3):
    assert os.write(fd, b"w" * 1000) == 1000
os.lseek(fd, 0, os.SEEK_SET)
for _ in range(2):
    assert len(os.read(fd, 500)) == 500
os.close(fd)
fd = os.open(path2, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
assert os.pwrite(fd, b"p" * 700, 0) == 700
assert os.writev(fd, [b"a" * 100, b"b" * 200]) == 300
copy = os.dup(fd)
assert os.write(copy, b"d" * 10) == 10
os.dup2(fd, 50)
assert os.write(50, b"e" * 20) == 20
assert len(os.pread(fd, 400, 0)) == 400
os.lseek(fd, 0, os.SEEK_SET)
assert os.readv(fd, [bytearray(50), bytearray(50)]) == 100
for f in (fd, copy, 50):
    os.close(f)
null = os.open("/dev/null", os.O_WRONLY)
assert os.write(null, b"n" * 77) == 77
os.close(null)
"""

# Opens `before` and reports its fd, then waits; after the go: reads stdin once more, writes to `before` (an fd
# the -a instance started later knows no path of), to a new file and to /dev/null.
ALL_CHILD = r"""
import os, sys
before, after = sys.argv[1], sys.argv[2]
fd = os.open(before, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
print(fd, flush=True)
assert os.read(0, 1) == b"g"  # entered before the -a instance was attached: not seen
assert os.read(0, 1) == b"h"  # a read of the stdin pipe that it sees
assert os.write(fd, b"x" * 111) == 111
new = os.open(after, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
assert os.write(new, b"y" * 33) == 33
null = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
assert os.write(null, b"z" * 22) == 22
for f in (fd, new, null):
    os.close(f)
"""


@pytest.fixture(scope="module")
def after_exec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(tmp_path_factory.mktemp("files-exec"), "afterexec", AFTER_EXEC, ["-O2", "-static"])


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("files"), tracers=[TRACER])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _samples(agent: Agent, name: str) -> list[dict]:
    # The main instance counts every process's files: far more series than the default limit.
    return agent.get("/samples", name=name, latest=True, limit=100_000)


def _main_instance(agent: Agent) -> str:
    return next(i["id"] for i in agent.instances() if i["tracer"] == TRACER and not i["args"])


def _series(agent: Agent, instance: str, pid: int) -> dict[tuple[str, str, str], tuple[float, float]]:
    """{(path, fd, op): (bytes, ops)} of one process in one instance (summed over its comms)."""
    out: dict[tuple[str, str, str], list[float]] = {}
    for metric, i in (("eunomia_files_bytes_total", 0), ("eunomia_files_ops_total", 1)):
        for s in _samples(agent, metric):
            labels = s["labels"]
            if labels["instance"] == instance and labels["pid"] == str(pid):
                out.setdefault((labels["path"], labels["fd"], labels["op"]), [0.0, 0.0])[i] += s["value"]
    return {k: (v[0], v[1]) for k, v in out.items()}


def _paths(tmp: Path) -> tuple[str, str]:
    token = uuid.uuid4().hex
    return str(tmp / f"files-a-{token}"), str(tmp / f"files-b-{token}")


def test_exact_bytes_and_ops_per_file(agent: Agent, tmp_path: Path) -> None:
    """The child does its I/O after the test moved it into a cgroup of its own: its series
    carry that cgroup's id."""
    instance = _main_instance(agent)
    path, path2 = _paths(tmp_path)
    with private_cgroup() as cgroup:
        child = subprocess.Popen([sys.executable, "-c", IO_CHILD, path, path2], stdin=subprocess.PIPE)
        comm = Path(f"/proc/{child.pid}/comm").read_text().strip()
        (cgroup / "cgroup.procs").write_text(str(child.pid))
        cgroup_id = cgroup_id_of(child.pid)
        assert cgroup_id == os.stat(cgroup).st_ino != cgroup_id_of(os.getpid())
        child.communicate(b"g")
        assert child.returncode == 0
    expected = {
        (path, "-1", "write"): (3000.0, 3.0),
        (path, "-1", "read"): (1000.0, 2.0),
        # pwrite 700 + writev 300 + 10 through dup() + 20 through dup2()
        (path2, "-1", "write"): (1030.0, 4.0),
        (path2, "-1", "read"): (500.0, 2.0),  # pread 400 + readv 100
    }

    def mine() -> dict | None:
        series = _series(agent, instance, child.pid)
        return series if all(series.get(k) == v for k, v in expected.items()) else None

    series = wait_for(mine, 15, f"the exact counts of {path} and {path2}")
    # Nothing else of ours under these paths, and no /dev/null without -a.
    assert {k: v for k, v in series.items() if k[0] in (path, path2)} == expected
    assert not any(k[0] == "/dev/null" for k in series)
    comms = {(s["labels"]["comm"], s["labels"]["cgroup_id"]) for s in _samples(agent, "eunomia_files_bytes_total")
             if s["labels"]["instance"] == instance and s["labels"]["path"] in (path, path2)}
    assert comms == {(comm, str(cgroup_id))}


def test_all_files_option_counts_fds_without_a_path(agent: Agent, tmp_path: Path) -> None:
    main = _main_instance(agent)
    before, after = _paths(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", ALL_CHILD, before, after],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        fd = json.loads(child.stdout.readline())  # `before` is open now
        inst = agent.start(TRACER, ["-a", "-p", str(child.pid)])
        try:
            agent.wait_state(inst["id"], "running")
            child.communicate(b"gh")
            assert child.returncode == 0
            expected = {
                ("", str(fd), "write"): (111.0, 1.0),  # opened before this instance: no path
                ("", "0", "read"): (1.0, 1.0),         # the second byte from the stdin pipe
                (after, "-1", "write"): (33.0, 1.0),
                ("/dev/null", "-1", "write"): (22.0, 1.0),
            }

            def counted() -> dict | None:
                series = _series(agent, inst["id"], child.pid)
                return series if all(series.get(k) == v for k, v in expected.items()) else None

            series = wait_for(counted, 15, "the -a instance's exact counts")
            assert {k: v for k, v in series.items() if k[0] != "" or k[1] in (str(fd), "0")} == expected
            # -p: only the child's files in this instance.
            pids = {s["labels"]["pid"] for s in _samples(agent, "eunomia_files_bytes_total")
                    if s["labels"]["instance"] == inst["id"]}
            assert pids == {str(child.pid)}
            # The main instance saw the open of `before`: it knows the path; /dev/null and
            # the stdin pipe are not counted without -a.
            # (bytes and operations are two queries: wait for both values, not for the key)
            main_series = wait_for(lambda: (m := _series(agent, main, child.pid)).get((before, "-1", "write"))
                                   == (111.0, 1.0) and m.get((after, "-1", "write")) == (33.0, 1.0) and m, 15,
                                   "the main instance's counts of both files")
            assert not any(k[0] in ("", "/dev/null") for k in main_series)
        finally:
            assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
    finally:
        child.kill()
        child.wait()


def test_close_on_exec_fds_lose_their_path_and_inherited_ones_keep_it(agent: Agent, tmp_path: Path,
                                                                     after_exec: Path) -> None:
    main = _main_instance(agent)
    closed, kept = _paths(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", EXEC_CHILD, closed, kept, str(after_exec)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        inst = agent.start(TRACER, ["-a", "-p", str(child.pid)])
        try:
            agent.wait_state(inst["id"], "running")
            out, _ = child.communicate(b"g")
            assert child.returncode == 0, f"the program after exec failed with {child.returncode}"
            closed_fd = str(int(out))
            known = {
                (closed, "-1", "write"): (3.0, 1.0),
                (kept, "-1", "write"): (11.0, 2.0),  # 4 before the exec, 7 after it
            }
            # The pipe's read end has the number `closed` had: no path (-a shows its number).
            expected = {**known, ("", closed_fd, "read"): (5.0, 1.0)}

            def counted() -> dict | None:
                series = _series(agent, inst["id"], child.pid)
                return series if all(series.get(k) == v for k, v in expected.items()) else None

            series = wait_for(counted, 15, "the counts across the exec")
            # (fd 1: the child's stdout pipe, where it printed that number)
            pipe_writes = {k: v for k, v in series.items() if k[0] == "" and k[2] == "write" and k[1] != "1"}
            assert list(pipe_writes.values()) == [(5.0, 1.0)] and ("", closed_fd, "write") not in pipe_writes
            assert not any(k[0] == closed and k[2] == "read" for k in series)
            comms = {s["labels"]["comm"] for s in _samples(agent, "eunomia_files_bytes_total")
                     if s["labels"]["instance"] == inst["id"] and s["labels"]["path"] == kept}
            assert comms == {Path(sys.executable).name[:15], after_exec.name}
            # Without -a: the two files, nothing else of the process after the go.
            main_series = wait_for(lambda: (m := _series(agent, main, child.pid)).get((kept, "-1", "write")) == (
                11.0, 2.0) and m, 15, "the main instance's counts")
            assert {k: v for k, v in main_series.items() if k[0] in (closed, kept)} == known
        finally:
            assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
