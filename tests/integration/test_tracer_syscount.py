"""syscount: exact syscall counts of a program this test compiles."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agentctl import Agent, child_in_cgroup, compile_c, enter_cgroup, private_cgroup, wait_for

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
    return compile_c(tmp_path_factory.mktemp("syscount"), "calls", PROGRAM)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("agent"), tracers=[])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


LABELS = ("cgroup_id", "comm", "pid", "syscall")  # the metrics' own labels, sorted


def _series(agent: Agent, metric: str, instance: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple((k, s["labels"][k]) for k in LABELS if k in s["labels"]): s["value"]
            for s in agent.latest(metric, instance=instance)}


def _run(program: Path, instance_args: list[str], agent: Agent) -> tuple[dict, int, str]:
    """The program, in a cgroup of its own, traced by a new instance: (instance, pid, cgroup id)."""
    with private_cgroup() as cgroup:
        child = subprocess.Popen([str(program), str(GETPPID), str(BAD_CLOSE)], stdin=subprocess.PIPE,
                                 preexec_fn=enter_cgroup(cgroup))
        inst = agent.start("syscount", [*instance_args, "-p", str(child.pid)])
        agent.wait_state(inst["id"], "running")
        child.communicate(b"go\n")
        assert child.returncode == 0
        return inst, child.pid, str(os.stat(cgroup).st_ino)


def test_calls_and_errors_per_syscall_exactly(agent: Agent, program: Path) -> None:
    inst, _pid, cgroup = _run(program, [], agent)
    getppid, close = (("cgroup_id", cgroup), ("syscall", "getppid")), (("cgroup_id", cgroup), ("syscall", "close"))
    calls = wait_for(lambda: (c := _series(agent, "eunomia_syscount_calls_total", inst["id"]))
                     .get(getppid) == GETPPID and c, 15, "the getppid count")
    errors = wait_for(lambda: (e := _series(agent, "eunomia_syscount_errors_total", inst["id"]))
                      .get(close) == BAD_CLOSE and e, 15, "the failed close count")
    assert calls[close] == BAD_CLOSE
    assert getppid not in errors  # getppid never fails
    assert {dict(k)["cgroup_id"] for k in [*calls, *errors]} == {cgroup}  # the process never left its cgroup
    time.sleep(1.5)  # one more read: the counts are final, nothing else of the process is added
    assert _series(agent, "eunomia_syscount_calls_total", inst["id"])[getppid] == GETPPID


def test_per_process_latency_and_failed_only(agent: Agent, program: Path) -> None:
    inst, pid, cgroup = _run(program, ["-P", "-L", "-x"], agent)
    per_process = wait_for(lambda: (p := _series(agent, "eunomia_syscount_process_calls_total", inst["id"]))
                           .get((("cgroup_id", cgroup), ("comm", "calls"), ("pid", str(pid)), ("syscall", "close")))
                           == BAD_CLOSE and p, 15, "the per-process count of failed closes")
    assert not any(dict(k)["syscall"] == "getppid" for k in per_process)  # -x: failed calls only
    close = (("cgroup_id", cgroup), ("syscall", "close"))
    latency = wait_for(lambda: (h := _series(agent, "eunomia_syscount_latency_seconds_count", inst["id"]))
                       .get(close) and h, 15, "the close latency histogram")
    assert latency[close] == BAD_CLOSE


MOVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv)
{
    for (int round = 1; round < argc; round++) {
        (void)getchar();                   /* the test moves us between rounds */
        for (int i = 0; i < atoi(argv[round]); i++)
            syscall(SYS_getppid);
        printf("done\n");
        fflush(stdout);
    }
    (void)getchar();
    return 0;
}
"""


@pytest.fixture(scope="module")
def mover(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(tmp_path_factory.mktemp("mover"), "mover", MOVER)


def _round(proc: subprocess.Popen[bytes]) -> None:
    """Let the mover make its next round of calls (one character: one getchar()) and wait for it."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"g")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"done\n"


def test_a_thread_moved_to_another_cgroup_is_counted_there_at_once(agent: Agent, mover: Path) -> None:
    """Each CPU remembers the last thread's cgroup id (bpf_get_current_cgroup_id() is dear on every
    syscall); a move between cgroups must invalidate it: the counts split exactly where the move was."""
    rounds = (300, 500, 700)
    with private_cgroup() as first, private_cgroup() as second, \
            child_in_cgroup([str(mover), *map(str, rounds)], first) as proc:
        inst = agent.start("syscount", ["-p", str(proc.pid)])
        agent.wait_state(inst["id"], "running")
        for cgroup in (first, second, first):
            (cgroup / "cgroup.procs").write_text(str(proc.pid))
            _round(proc)
        ids = {os.stat(first).st_ino: rounds[0] + rounds[2], os.stat(second).st_ino: rounds[1]}

        def counts() -> dict[int, float] | None:
            got = {int(dict(k)["cgroup_id"]): v for k, v in _series(agent, "eunomia_syscount_calls_total",
                                                                    inst["id"]).items()
                   if dict(k).get("syscall") == "getppid"}
            seen.append(got)
            return got if got == ids else None

        seen: list[dict[int, float]] = []
        try:
            wait_for(counts, 15, f"getppid counted per cgroup as {ids}")
        except AssertionError:
            raise AssertionError(f"getppid per cgroup: {seen[-1:]}, expected {ids}") from None


def _worker(agent: Agent, instance_id: str) -> dict[str, Any]:
    return agent.get(f"/instances/{instance_id}")["worker"]


def test_counts_stay_exact_while_a_cgroup_gains_and_gives_back_its_row(agent: Agent, mover: Path) -> None:
    """The fast path: the worker gives a busy cgroup a row of a per-CPU array, and takes it
    back once the cgroup is idle. Counts made before, on and after the row add up exactly."""
    rounds = (300, 5000, 700)
    with private_cgroup() as cgroup, child_in_cgroup([str(mover), *map(str, rounds)], cgroup) as proc:
        inst = agent.start("syscount", ["-p", str(proc.pid), "--cgroup-row-idle", "2"])
        agent.wait_state(inst["id"], "running")
        wait_for(lambda: _worker(agent, inst["id"]).get("cgroup_rows_assigned") == 0, 10,
                 "the worker's first report, with no row given yet")
        _round(proc)  # on the slow path: the cgroup has no row yet
        wait_for(lambda: _worker(agent, inst["id"]).get("cgroup_rows_held") == 1, 10, "a row for the cgroup")
        _round(proc)  # on its row
        getppid = (("cgroup_id", str(os.stat(cgroup).st_ino)), ("syscall", "getppid"))
        wait_for(lambda: _series(agent, "eunomia_syscount_calls_total", inst["id"]).get(getppid) == 5300, 15,
                 "300 + 5000 getppid calls")
        # the 5000 went through the row, not the hash map (which would give the same total)
        wait_for(lambda: _worker(agent, inst["id"])["cgroup_row_counts"] >= 5000, 10,
                 "the 5000 calls counted on the row")
        wait_for(lambda: (w := _worker(agent, inst["id"]))["cgroup_rows_retired"] == 1
                 and w["cgroup_rows_held"] == 0, 15, "the idle cgroup's row taken back")
        _round(proc)  # on the slow path again, then on a new row
        wait_for(lambda: _worker(agent, inst["id"])["cgroup_rows_assigned"] == 2, 10, "a second row")
        wait_for(lambda: _series(agent, "eunomia_syscount_calls_total", inst["id"]).get(getppid) == sum(rounds),
                 15, f"{sum(rounds)} getppid calls")
        wait_for(lambda: (w := _worker(agent, inst["id"]))["cgroup_rows_retired"] == 2
                 and w["cgroup_rows_held"] == 0, 15, "the second row taken back")
        time.sleep(1.5)  # a metrics read after the fold: still exact
        assert _series(agent, "eunomia_syscount_calls_total", inst["id"])[getppid] == sum(rounds)


def test_without_rows_every_cgroup_counts_in_the_hash_map(agent: Agent, program: Path) -> None:
    inst, _pid, cgroup = _run(program, ["--cgroup-rows", "0"], agent)
    getppid = (("cgroup_id", cgroup), ("syscall", "getppid"))
    wait_for(lambda: _series(agent, "eunomia_syscount_calls_total", inst["id"]).get(getppid) == GETPPID, 15,
             "the getppid count")
    worker = wait_for(lambda: "cpu_seconds" in (w := _worker(agent, inst["id"])) and w, 10, "a heartbeat")
    assert "cgroup_rows_held" not in worker  # no row set at all
