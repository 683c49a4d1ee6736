"""Crash isolation: failing workers never take the supervisor or other tracers down."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil

from tests.integration.agentctl import Agent, unique, wait_for, workers_alive


def _exec_is_traced(agent: Agent, tmp_path: Path, instance: str) -> None:
    """Ground truth that a tracer still works: a uniquely named exec shows up."""
    exe = tmp_path / unique("eu-alive")
    shutil.copy("/bin/true", exe)
    child = subprocess.run([str(exe)], check=True)
    del child
    wait_for(lambda: [e for e in agent.events(instance=instance) if e.get("filename") == str(exe)], 10,
             f"the exec of {exe.name} in {instance}")


def _restarted(agent: Agent, instance: str, what: str) -> dict:
    return wait_for(lambda: (i := agent.instance(instance))["state"] == "running" and i["restarts"] == 1 and i,
                    30, what)


def test_crashing_worker_backs_off_then_goes_fatal(fresh_agent: Agent, tmp_path: Path) -> None:
    agent = fresh_agent
    survivor = agent.start("process")
    crasher = agent.start("crasher")
    agent.wait_state(survivor["id"], "running")
    seen: set[str] = set()

    def fatal() -> dict | None:
        subprocess.run(["/bin/true"], check=True)  # an exec: the crasher's hook segfaults on it
        info = agent.instance(crasher["id"])
        seen.add(info["state"])
        return info if info["state"] == "fatal" else None

    info = wait_for(fatal, 90, "the crasher to be declared fatal", interval=0.2)
    assert {"running", "backoff"} <= seen
    assert info["restarts"] == 4  # five crashes within 60 s: the first start and four restarts
    assert "gave up after 5 crashes" in info["last_error"]
    assert "SIGSEGV" in info["last_error"] and "hook.py" in info["last_error"]
    assert info["pid"] is None
    assert agent.get("/health")["status"] == "degraded"
    assert agent.instance(survivor["id"])["state"] == "running"
    assert agent.instance(survivor["id"])["restarts"] == 0
    _exec_is_traced(agent, tmp_path, survivor["id"])


def test_verifier_rejection_is_fatal_at_once_with_the_verifier_message(fresh_agent: Agent) -> None:
    inst = fresh_agent.start("rejected")
    info = fresh_agent.wait_state(inst["id"], "fatal", timeout=30)
    assert info["restarts"] == 0
    assert info["last_error"].startswith("verifier: the kernel verifier rejected the program")
    assert "invalid mem access 'map_value_or_null'" in info["last_error"]
    assert "program.bpf.c:" in info["last_error_log"]  # the log points at the source line
    # asking again gives the same verdict, again without a restart loop
    response = fresh_agent.request("POST", f"/instances/{inst['id']}/restart")
    assert response.status_code == 200, response.text
    info = fresh_agent.wait_state(inst["id"], "fatal", timeout=30)
    assert info["restarts"] == 0


def test_killed_worker_is_restarted(fresh_agent: Agent, tmp_path: Path) -> None:
    inst = fresh_agent.start("process")
    first = fresh_agent.wait_state(inst["id"], "running")
    os.kill(first["pid"], signal.SIGKILL)
    info = _restarted(fresh_agent, inst["id"], "the restart after kill -9")
    assert info["pid"] != first["pid"]
    assert "killed by SIGKILL" in info["last_error"]
    _exec_is_traced(fresh_agent, tmp_path, inst["id"])


def test_stopped_worker_is_detected_by_heartbeat_and_replaced(fresh_agent: Agent, tmp_path: Path) -> None:
    inst = fresh_agent.start("process")
    first = fresh_agent.wait_state(inst["id"], "running")
    os.kill(first["pid"], signal.SIGSTOP)
    info = _restarted(fresh_agent, inst["id"], "the replacement of the stopped worker")
    assert "no heartbeat" in info["last_error"]
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE
    _exec_is_traced(fresh_agent, tmp_path, inst["id"])


def test_sigterm_stops_and_reaps_every_worker(tmp_path: Path) -> None:
    agent = Agent(tmp_path, tracers=["process", "opensnoop"])
    agent.wait_running()
    workers = agent.worker_pids()
    assert len(workers) == 2
    assert agent.stop() == 0
    assert workers_alive(workers) == set()
    assert not agent.socket.exists()


def test_kill9_of_the_supervisor_leaves_no_worker(tmp_path: Path) -> None:
    agent = Agent(tmp_path, tracers=["process", "tcpconnect"])
    try:
        agent.wait_running()
        workers = agent.worker_pids()
        assert len(workers) == 2
        agent.proc.kill()
        agent.proc.wait()
        wait_for(lambda: not workers_alive(workers), 5, "the workers to die with their supervisor")
    finally:
        agent.stop()


def test_missing_tracepoint_and_invalid_spec_are_reported_without_restarts(tmp_path: Path) -> None:
    extra = tmp_path / "tracers"
    (extra / "ghost").mkdir(parents=True)
    (extra / "ghost" / "tracer.yaml").write_text(
        "name: ghost\ndescription: attaches to a tracepoint no kernel has\n"
        "probes:\n  - tracepoint: sched:sched_no_such_event\nevent:\n  fields: []\n")
    (extra / "ghost" / "program.bpf.c").write_text(
        '#include "eunomia.h"\nstruct event { struct eunomia_header hdr; };\n'
        "TRACEPOINT_PROBE(sched, sched_no_such_event) { return 0; }\n")
    (extra / "broken").mkdir()
    (extra / "broken" / "tracer.yaml").write_text(
        "name: broken\ndescription: bad field type\nprobes:\n  - tracepoint: sched:sched_process_exec\n"
        "event:\n  fields:\n    - {name: x, type: u128}\n")
    (extra / "broken" / "program.bpf.c").write_text("\n")
    (extra / "bigstack").mkdir()  # LLVM's back end aborts the worker process on this one
    (extra / "bigstack" / "tracer.yaml").write_text(
        "name: bigstack\ndescription: more than 512 bytes of stack\n"
        "probes:\n  - tracepoint: sched:sched_process_exec\nevent:\n  fields: []\n")
    (extra / "bigstack" / "program.bpf.c").write_text(
        '#include "eunomia.h"\nstruct event { struct eunomia_header hdr; };\n'
        "TRACEPOINT_PROBE(sched, sched_process_exec) { char big[1024];\n"
        "  bpf_get_current_comm(big, sizeof(big)); return big[3] + big[700]; }\n")
    agent = Agent(tmp_path / "agent", tracers=[], extra=["--tracer-path", str(extra)])
    try:
        agent.wait_running()
        errors = agent.get("/health")["tracer_errors"]
        assert list(errors) == [str(extra / "broken")]
        assert "event.fields.0.type" in errors[str(extra / "broken")] and "u128" in errors[str(extra / "broken")]
        response = agent.request("POST", "/instances", json={"tracer": "broken"})
        assert response.status_code == 404
        assert "could not be loaded" in response.json()["detail"] and "u128" in response.json()["detail"]
        inst = agent.start("ghost")
        info = agent.wait_state(inst["id"], "fatal", timeout=30)
        assert info["restarts"] == 0
        assert info["last_error"] == "tracepoint: tracepoint(s) not available on this kernel: sched:sched_no_such_event"
        inst = agent.start("bigstack")
        info = agent.wait_state(inst["id"], "fatal", timeout=30)
        assert info["restarts"] == 0
        assert info["last_error"].startswith("load: the worker stopped while compiling or loading")
        assert "BPF stack limit of 512 bytes is exceeded" in info["last_error"]
    finally:
        assert agent.stop() == 0
