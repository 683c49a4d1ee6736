"""End to end: real tracers in a real agent, each instance exporting through its own otlp
handler (export_handlers), and a loopback OTLP/HTTP receiver: a process this test
runs arrives as log records with its exact pid and arguments, and its exact syscall count and
latency histogram arrive as metrics."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agentctl import Agent, cgroup_id_of, compile_c, unique, wait_for
from tests.integration.otlp_receiver import OtlpReceiver

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "wait") == 0) {   /* wait for the test, then exec again: */
        (void)getchar();                                /* the same pid, now traced from the start */
        char *again[] = {argv[0], "1234", "two words", NULL};
        execv(argv[0], again);
        return 100;
    }
    for (int i = 0; i < atoi(argv[1]); i++)
        syscall(SYS_getppid);
    (void)getchar();                                    /* alive until the exec record is in */
    return 3;
}
"""
GETPPID = 1234


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(tmp_path_factory.mktemp("otlp-e2e"), unique("eu-otlp"), PROGRAM)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


def test_a_traced_process_and_its_syscall_counts_reach_the_collector(tmp_path: Path, program: Path,
                                                                     receiver: OtlpReceiver) -> None:
    child = subprocess.Popen([str(program), "wait"], stdin=subprocess.PIPE)
    cgroup = cgroup_id_of(child.pid)
    otlp = [{"name": "otlp", "args": ["--endpoint", receiver.url, "--interval", "0.2"]}]
    agent = Agent(tmp_path, tracers=[])
    try:
        agent.wait_running()
        ids = [agent.start("process", {}, export_handlers=otlp)["id"],
               agent.start("syscount", ["-L", "-p", str(child.pid)], export_handlers=otlp)["id"]]
        for instance in ids:
            agent.wait_state(instance, "running")
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        _check_exec(receiver, child.pid, program)
        assert child.communicate(b"end\n") == (None, None)
        assert child.returncode == 3
        _check_exit(receiver, child.pid)
        _check_metrics(receiver, cgroup)
        # the receiver has a record before the handler has the answer and counts it as sent
        handlers = wait_for(lambda: (h := {i: agent.instance(i)["export_handlers"][0] for i in ids})[ids[0]]
                            ["detail"]["sent_events"] >= 2 and h, 10, "the last answers to be counted")
    finally:
        if child.poll() is None:
            child.kill()
        agent.stop()
    for stats in handlers.values():
        assert stats["name"] == "otlp" and stats["errors"] == 0 and stats["dropped"] == 0, stats
    assert handlers[ids[0]]["detail"]["sent_events"] >= 2  # the exec and the exit, at least
    assert handlers[ids[1]]["detail"]["sent_points"] >= 2


def _records(receiver: OtlpReceiver, pid: int, event: str) -> list[Any]:
    return [r for r in receiver.records() if r.attributes.get("process.pid") == pid
            and r.attributes.get("eunomia.process.event") == event]


def _check_exec(receiver: OtlpReceiver, pid: int, program: Path) -> None:
    (exec_rec,) = wait_for(lambda: _records(receiver, pid, "exec"), 20, "the exec record")
    attrs = exec_rec.attributes
    assert attrs["process.command_args"] == [str(program), str(GETPPID), "two words"]
    assert attrs["process.args_count"] == 3 and attrs["eunomia.process.args_truncated"] == 0
    assert attrs["process.executable.path"] == str(program)
    assert attrs["process.executable.name"] == program.name and attrs["process.parent_pid"] == os.getpid()
    assert attrs["process.real_user.id"] == os.getuid() and attrs["thread.id"] == pid
    assert exec_rec.record.event_name == "eunomia.process"
    assert exec_rec.resource["eunomia.tracer"] == "process" and exec_rec.resource["service.name"] == "eunomia"


def _check_exit(receiver: OtlpReceiver, pid: int) -> None:
    (exit_rec,) = wait_for(lambda: _records(receiver, pid, "exit"), 20, "the exit record")
    assert exit_rec.attributes["process.exit.code"] == 3
    assert exit_rec.attributes["eunomia.process.exit_signal"] == 0
    assert exit_rec.attributes["eunomia.process.duration_ns"] > 0
    (exec_rec,) = _records(receiver, pid, "exec")
    assert exec_rec.record.time_unix_nano <= exit_rec.record.time_unix_nano


def _check_metrics(receiver: OtlpReceiver, cgroup_id: int) -> None:
    # the kernel's series are per syscall and cgroup; the agent adds the cgroup's container (the host's here)
    labels = {"syscall": "getppid", "eunomia.cgroup_id": str(cgroup_id), "container.runtime.name": "host"}

    def syscount(name: str) -> list[Any]:
        return [p for p in receiver.points(name)
                if p.resource["eunomia.tracer"] == "syscount" and p.attributes == labels]

    calls = wait_for(lambda: [p for p in syscount("eunomia_syscount_calls_total") if p.point.as_int == GETPPID],
                     20, f"getppid counted {GETPPID} times")[-1]
    assert calls.metric.sum.is_monotonic and calls.metric.sum.aggregation_temporality == 2  # cumulative
    assert calls.point.start_time_unix_nano <= calls.point.time_unix_nano
    assert all(p.point.as_int <= GETPPID for p in syscount("eunomia_syscount_calls_total"))
    latency = wait_for(lambda: [p for p in syscount("eunomia_syscount_latency_seconds") if p.point.count == GETPPID],
                       20, f"{GETPPID} getppid latencies")[-1]
    bounds = list(latency.point.explicit_bounds)
    assert bounds == [2**slot * 1e-9 for slot in range(len(bounds))]  # the kernel's log2 slots, in seconds
    assert sum(latency.point.bucket_counts) == GETPPID and len(latency.point.bucket_counts) == len(bounds) + 1
    assert latency.metric.unit == "s"
    assert latency.resource["eunomia.instance"] == calls.resource["eunomia.instance"]
