"""eunomiactl against a real agent, and `trace` on its own."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.integration.agentctl import EUNOMIACTL, REPO, Agent, joined_cgroup, private_cgroup, unique, wait_for


def ctl(*args: str, socket: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if socket is not None:
        env["EUNOMIA_SOCKET"] = str(socket)
    return subprocess.run([*EUNOMIACTL, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def test_list_json_has_the_documented_keys(agent: Agent) -> None:
    result = ctl("list", "--json", socket=agent.socket)
    assert result.returncode == 0, result.stderr
    instances = json.loads(result.stdout)
    assert sorted(i["tracer"] for i in instances) == ["opensnoop", "process", "tcpconnect"]
    for inst in instances:
        assert {"id", "tracer", "state", "pid", "restarts", "events", "drops", "last_error"} <= set(inst)
        assert inst["state"] == "running" and isinstance(inst["pid"], int)
        worker = inst["worker"]  # the live worker's own counters, from its heartbeat
        assert {"produced", "sent", "ipc_frames_dropped", "kernel_missed_runs", "hook_errors"} <= set(worker)
        assert worker["sent"] <= worker["produced"] and worker["private_dirty_kib"] > 0


def test_list_table_and_socket_option(agent: Agent) -> None:
    result = ctl("list", "--socket", str(agent.socket))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "TRACER", "STATE", "PID"]
    assert sum("running" in line for line in lines[1:]) == 3


def test_unreachable_agent_is_a_clear_error(tmp_path: Path) -> None:
    result = ctl("list", socket=tmp_path / "nothing.sock")
    assert result.returncode == 1
    assert "cannot reach the agent" in result.stderr and "nothing.sock" in result.stderr


def test_start_stop_restart_rm(agent: Agent) -> None:
    result = ctl("start", "opensnoop", "-x", "--id", "cli-open", socket=agent.socket)
    assert result.returncode == 0, result.stderr
    assert "started cli-open" in result.stdout
    agent.wait_state("cli-open", "running")
    assert ctl("stop", "cli-open", socket=agent.socket).returncode == 0
    agent.wait_state("cli-open", "stopped")
    assert ctl("restart", "cli-open", socket=agent.socket).returncode == 0
    agent.wait_state("cli-open", "running")
    assert ctl("rm", "cli-open", socket=agent.socket).returncode == 0
    wait_for(lambda: "cli-open" not in {i["id"] for i in agent.instances()}, 10, "cli-open to be removed")
    bad = ctl("start", "opensnoop", "--pid", "x", socket=agent.socket)
    assert bad.returncode == 1 and "parameter 'pid': expected an integer" in bad.stderr


def test_query_events_and_samples(agent: Agent, tmp_path: Path) -> None:
    exe = tmp_path / unique("eu-query")
    shutil.copy("/bin/true", exe)
    subprocess.run([str(exe), "hello"], check=True)
    wait_for(lambda: {e["event"] for e in agent.events(tracer="process", comm=exe.name)} == {"exec", "exit"}, 10,
             "the exec and the exit in the store")
    result = ctl("query", "events", "--tracer", "process", "--comm", exe.name, "--json", socket=agent.socket)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["event"] for e in events} == {"exec", "exit"}
    exec_ev = next(e for e in events if e["event"] == "exec")
    assert exec_ev["argv"] == [str(exe), "hello"] and exec_ev["tracer"] == "process"
    human = ctl("query", "events", "--comm", exe.name, "--since", "5m", socket=agent.socket)
    assert human.returncode == 0 and exe.name in human.stdout
    wait_for(lambda: agent.latest("eunomia_process_execs_total", comm=exe.name), 10, f"the exec counter of {exe.name}")
    samples = ctl("query", "samples", "--name", "eunomia_process_execs_total", socket=agent.socket)
    assert samples.returncode == 0
    assert any(line.startswith("eunomia_process_execs_total{") and f'comm="{exe.name}"' in line
               for line in samples.stdout.splitlines()), samples.stdout


def test_trace_json_prints_live_events_with_documented_fields(tmp_path: Path) -> None:
    name = unique("eu-trace")
    exe = tmp_path / name
    shutil.copy("/bin/sh", exe)
    proc = subprocess.Popen([*EUNOMIACTL, "trace", "process", "-n", name, "--duration", "30", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        children: list[int] = []

        def traced() -> list[dict]:
            child = subprocess.Popen([str(exe), "-c", "exit 5", "x"])
            child.wait()
            children.append(child.pid)
            return [json.loads(line) for line in list(lines)]

        events = wait_for(lambda: [e for e in traced() if e["event"] == "exit"], 30, "events from trace", 0.5)
        events = [json.loads(line) for line in list(lines)]
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0, proc.stderr.read()
    assert events, "no events printed"
    assert {e["comm"] for e in events} == {name}  # the comm filter, in the kernel
    assert {e["pid"] for e in events} <= set(children)
    exec_ev = next(e for e in events if e["event"] == "exec")
    for key in ("ts", "tracer", "pid", "comm", "uid", "ppid", "filename", "argv"):
        assert key in exec_ev, key
    assert exec_ev["tracer"] == "process" and exec_ev["argv"] == [str(exe), "-c", "exit 5", "x"]
    assert exec_ev["ppid"] == os.getpid()
    assert abs(exec_ev["ts"] / 1e9 - time.time()) < 60
    exit_ev = next(e for e in events if e["event"] == "exit" and e["pid"] == exec_ev["pid"])
    assert exit_ev["exit_code"] == 5


def test_trace_prints_the_kernel_counters_at_the_end() -> None:
    """The connects come from a cgroup of the test's own: its series count them alone,
    whatever else on the machine connects meanwhile."""
    proc = subprocess.Popen([*EUNOMIACTL, "trace", "tcpconnect", "--duration", "8", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    with socket.socket() as listener, private_cgroup() as cgroup, joined_cgroup(cgroup):
        cgroup_id = str(os.stat(cgroup).st_ino)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]

        def connect_once() -> list[dict]:
            with socket.create_connection(("127.0.0.1", port)):
                pass
            listener.accept()[0].close()
            return [e for e in map(json.loads, list(lines)) if e.get("dport") == port]

        wait_for(connect_once, 15, "the tracer to see a connect", 0.3)  # it is attached from here on
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", port)):
                pass
            listener.accept()[0].close()
        assert proc.wait(30) == 0, proc.stderr.read()
    reader.join(10)  # its last lines may still be in the pipe
    records = [json.loads(line) for line in lines]
    events = [r for r in records if r.get("dport") == port]
    own = {"cgroup_id": cgroup_id, "container_runtime": "host"}  # the agent names the cgroup's container
    counters = [r for r in records if r.get("metric") == "eunomia_tcp_connects_total"
                and r["labels"] == {**own, "family": "4", "dport": str(port)}]
    assert len(events) >= 5  # the first one seen, and four more
    assert {e["cgroup_id"] for e in events} == {int(cgroup_id)}
    # every connect since the attach is both an event and a count in the kernel's map
    assert counters and counters[-1]["value"] == len(events) and counters[-1]["tracer"] == "tcpconnect"
    histogram = [r for r in records if r.get("metric") == "eunomia_tcp_connect_latency_seconds"
                 and r["labels"] == own][-1]
    assert sum(n for _, n in histogram["buckets"]) == len(events)


def test_trace_rejects_bad_options_before_loading() -> None:
    result = ctl("trace", "opensnoop", "--bogus", "1")
    assert result.returncode == 2
    assert "unknown option '--bogus'" in result.stderr
    result = ctl("trace", "nosuch")
    assert result.returncode == 2 and "no tracer named 'nosuch'" in result.stderr


def test_doctor_reports_the_host_and_every_tracer() -> None:
    result = ctl("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert {"kernel", "BTF", "tracefs", "kernel headers", "bcc", "kprobes", "uprobes", "perf events"} <= set(checks)
    assert checks["uprobes"]["status"] == checks["perf events"]["status"] == "ok"
    assert checks["tracefs"]["status"] == "ok"
    assert checks["kernel headers"]["detail"].split(":")[0] in ("exact", "approximate")
    tracers = {t["name"]: t for t in report["tracers"]}
    for name in ("process", "opensnoop", "tcpconnect", "funclatency", "profile", "syscount"):
        assert tracers[name]["can_run"], tracers[name]
