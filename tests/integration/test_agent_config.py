"""``eunomiactl run --config``: a bad file stops the agent with 78 before anything starts; a good one starts
its tracers (seen through the API) and the agent speaks sd_notify to a socket the test binds."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import psutil

from tests.integration.agentctl import EUNOMIACTL, REPO, Agent, wait_for


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eunomia.yaml"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def run_briefly(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EUNOMIACTL, "run", "--runtime-dir", str(tmp_path / "run"), "--db",
                           str(tmp_path / "e.db"), *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_bad_config_exits_78_naming_file_line_field_and_starts_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, "tracers:\n  - name: opensnoop\n    args: {pid: 1}\n"
                                    "listeners:\n  metrics: {port: 99999}\nstore: {retention: {max_age: 1d}}\n")
    result = run_briefly(tmp_path, "--config", str(config))
    assert result.returncode == 78, result.stderr
    assert f"{config}:5: listeners.metrics.port: Input should be less than or equal to 65535" in result.stderr
    assert f"{config}:6: store.retention.max_age: Extra inputs are not permitted" in result.stderr
    assert "not started (exit status 78)" in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "e.db").exists()  # nothing half-started


def test_tracer_problems_are_config_errors_too(tmp_path: Path) -> None:
    config = write_config(tmp_path, "tracers:\n  - name: opensnoop\n    args: {pid: -1}\n  - name: nosuch\n")
    result = run_briefly(tmp_path, "--config", str(config))
    assert result.returncode == 78, result.stderr
    assert f"{config}:3: tracers[0].args: parameter 'pid': -1 is below the minimum 0" in result.stderr
    assert f"{config}:4: tracers[1].name: no tracer named 'nosuch'" in result.stderr
    assert not (tmp_path / "run").exists()
    missing = run_briefly(tmp_path, "--config", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 78 and f"{tmp_path / 'absent.yaml'}: (top level): file not found" in missing.stderr
    flag = run_briefly(tmp_path, "--no-config", "--tracer", "nosuch")
    assert flag.returncode == 78 and "command line: --tracer nosuch: no tracer named 'nosuch'" in flag.stderr


def test_check_validates_without_starting(tmp_path: Path) -> None:
    config = write_config(tmp_path, "tracers:\n  - {name: opensnoop, id: opens}\n  - {name: process}\n")
    result = run_briefly(tmp_path, "--config", str(config), "--check")
    assert result.returncode == 0 and result.stdout.strip() == f"{config}: OK (tracers: opens, process)"
    assert not (tmp_path / "run").exists()


class NotifyListener:
    """An abstract-namespace datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.name = f"eunomia-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        self.messages: list[bytes] = []

    def poll(self) -> list[bytes]:
        try:
            while True:
                self.messages.append(self.sock.recv(4096))
        except BlockingIOError:
            pass
        return self.messages

    def count(self, message: bytes) -> int:
        return sum(1 for m in self.poll() if m == message)

    def first(self, prefix: bytes) -> int | None:
        return next((i for i, m in enumerate(self.poll()) if m.startswith(prefix)), None)


def test_good_config_starts_its_tracers_and_notifies_systemd(tmp_path: Path) -> None:
    config = write_config(tmp_path, """
tracers:
  - name: opensnoop
    id: failed-opens
    args: {failed: true}
  - name: process
    id: procs
    args: ["-n", "eunomiacfg"]
    export_handlers:
      - {name: prometheus}
heartbeat: {interval: 500ms, timeout: 5s}
""")
    notify = NotifyListener()
    agent = Agent(tmp_path, tracers=None, extra=["--config", str(config)],
                  env={"NOTIFY_SOCKET": "@" + notify.name, "WATCHDOG_USEC": "1000000"})
    try:
        wait_for(lambda: notify.first(b"READY=1") is not None, 90, "READY=1 from the agent")
        ready = notify.messages[notify.first(b"READY=1")]
        # READY is sent only once both default tracers have attached, and says so
        assert ready == b"READY=1\nSTATUS=2 tracers: 2 running", notify.messages
        assert all(m.startswith((b"STATUS=starting", b"WATCHDOG=1")) for m in notify.messages[:notify.first(b"READY")])
        instances = {i["id"]: i for i in agent.instances()}
        assert set(instances) == {"failed-opens", "procs"}
        assert instances["failed-opens"]["tracer"] == "opensnoop" and instances["failed-opens"]["values"]["failed"]
        assert instances["procs"]["tracer"] == "process" and instances["procs"]["values"]["comm"] == "eunomiacfg"
        assert all(i["state"] == "running" for i in instances.values())
        # WATCHDOG_USEC=1 s: pings every half second from the supervisor's loop
        pings = notify.count(b"WATCHDOG=1")
        wait_for(lambda: notify.count(b"WATCHDOG=1") >= pings + 3, 30, "three more WATCHDOG=1 pings")
        # the workers do not inherit systemd's variables (they could otherwise notify in the agent's name)
        for pid in agent.worker_pids():
            environ = psutil.Process(pid).environ()
            assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(environ), (pid, environ)
    finally:
        code = agent.stop()
    assert code == 0, agent.log()
    stopping = notify.first(b"STOPPING=1")
    assert stopping is not None and stopping > notify.first(b"READY=1"), notify.messages
    notify.sock.close()


def test_ready_comes_even_when_a_default_tracer_fails(tmp_path: Path) -> None:
    """A tracer that cannot attach must not hold the whole service in 'activating' until systemd kills it."""
    config = write_config(tmp_path, "tracers:\n  - {name: rejected, id: bad}\n  - {name: opensnoop, id: good}\n")
    notify = NotifyListener()
    agent = Agent(tmp_path, tracers=None, extra=["--config", str(config)], env={"NOTIFY_SOCKET": "@" + notify.name})
    try:
        wait_for(lambda: notify.first(b"READY=1") is not None, 90, "READY=1 from the agent")
        status = notify.messages[notify.first(b"READY=1")].split(b"\n")[1]
        assert status == b"STATUS=2 tracers: 1 running, 1 fatal", notify.messages
    finally:
        assert agent.stop() == 0
        notify.sock.close()
