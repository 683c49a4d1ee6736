"""syscount: exact syscall counts of a program this test compiles."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, wait_for

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv)
{
    (void)getchar();                       /* wait until the test says go */
    for (int i = 0; i < atoi(argv[1]); i++)
        syscall(SYS_getppid);
    for (int i = 0; i < atoi(argv[2]); i++)
        syscall(SYS_close, -1);            /* fails: EBADF */
    return 0;
}
"""
GETPPID, BAD_CLOSE = 1234, 77


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("syscount")
    (folder / "calls.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-O2", "-o", str(folder / "calls"), str(folder / "calls.c")], check=True)
    return folder / "calls"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("agent"), tracers=[])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _series(agent: Agent, metric: str, instance: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted((k, v) for k, v in s["labels"].items() if k not in ("instance", "tracer"))): s["value"]
            for s in agent.get("/samples", name=metric, latest=True) if s["labels"]["instance"] == instance}


def _run(program: Path, instance_args: list[str], agent: Agent) -> tuple[dict, int]:
    child = subprocess.Popen([str(program), str(GETPPID), str(BAD_CLOSE)], stdin=subprocess.PIPE)
    inst = agent.start("syscount", [*instance_args, "-p", str(child.pid)])
    agent.wait_state(inst["id"], "running")
    child.communicate(b"go\n")
    assert child.returncode == 0
    return inst, child.pid


def test_calls_and_errors_per_syscall_exactly(agent: Agent, program: Path) -> None:
    inst, _pid = _run(program, [], agent)
    calls = wait_for(lambda: (c := _series(agent, "eunomia_syscount_calls_total", inst["id"]))
                     .get((("syscall", "getppid"),)) == GETPPID and c, 15, "the getppid count")
    errors = wait_for(lambda: (e := _series(agent, "eunomia_syscount_errors_total", inst["id"]))
                      .get((("syscall", "close"),)) == BAD_CLOSE and e, 15, "the failed close count")
    assert calls[(("syscall", "close"),)] == BAD_CLOSE
    assert (("syscall", "getppid"),) not in errors  # getppid never fails
    time.sleep(1.5)  # one more read: the counts are final, nothing else of the process is added
    assert _series(agent, "eunomia_syscount_calls_total", inst["id"])[(("syscall", "getppid"),)] == GETPPID


def test_per_process_latency_and_failed_only(agent: Agent, program: Path) -> None:
    inst, pid = _run(program, ["-P", "-L", "-x"], agent)
    per_process = wait_for(lambda: (p := _series(agent, "eunomia_syscount_process_calls_total", inst["id"]))
                           .get((("comm", "calls"), ("pid", str(pid)), ("syscall", "close"))) == BAD_CLOSE and p,
                           15, "the per-process count of failed closes")
    assert not any(dict(k)["syscall"] == "getppid" for k in per_process)  # -x: failed calls only
    latency = wait_for(lambda: (h := _series(agent, "eunomia_syscount_latency_seconds_count", inst["id"]))
                       .get((("syscall", "close"),)) and h, 15, "the close latency histogram")
    assert latency[(("syscall", "close"),)] == BAD_CLOSE
