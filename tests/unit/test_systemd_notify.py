"""supervisor.systemd_notify and supervisor.service_status: the sd_notify protocol against a socket the test binds."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.service_status import ServiceReporter, describe
from supervisor.systemd_notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return messages


def test_messages_reach_a_path_socket(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier(path)
    assert notifier.ready("2 tracers: 2 running")
    assert notifier.status("line one\nline two")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert [sock.recv(4096) for _ in range(4)] == [b"READY=1\nSTATUS=2 tracers: 2 running",
                                                    b"STATUS=line one line two", b"WATCHDOG=1", b"STOPPING=1"]
    assert (notifier.sent, notifier.errors) == (4, 0)
    notifier.close()


def test_abstract_namespace_address() -> None:
    name = f"eunomia-notify-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier("@" + name).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({}, unset=False)
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert not notifier.ready() and not notifier.watchdog() and notifier.sent == 0


def test_a_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert not notifier.ready()
    assert (notifier.sent, notifier.errors) == (0, 1)


def test_environment_is_read_and_removed_for_the_workers() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242",
           "PATH": "/bin"}
    notifier = Notifier.from_environ(env, pid=4242)
    assert notifier.address == "/run/systemd/notify"
    assert notifier.watchdog_usec == 30_000_000 and notifier.watchdog_interval == 15.0  # half the timeout
    assert env == {"PATH": "/bin"}


@pytest.mark.parametrize(("env", "interval"), [
    ({"WATCHDOG_USEC": "2000000"}, 1.0),  # WATCHDOG_PID unset: ours
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, 1.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "x"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_only_when_meant_for_us(env: dict[str, str], interval: float | None) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@x", **env}, pid=4242, unset=False)
    assert notifier.watchdog_interval == interval


# ------------------------------------------------------------------ the reporter


class FakeSupervisor:
    def __init__(self) -> None:
        self.shutdown_requested = False
        self.states: dict[str, int] = {"starting": 2}

    def summary(self) -> dict:
        return {"instances": sum(self.states.values()), "states": dict(self.states)}


def test_describe() -> None:
    assert describe({"instances": 0, "states": {}}) == "0 tracers"
    assert describe({"instances": 1, "states": {"running": 1}}) == "1 tracer: 1 running"
    assert describe({"instances": 4, "states": {"fatal": 1, "running": 2, "backoff": 1, "stopped": 0}}) == \
        "4 tracers: 2 running, 1 backoff, 1 fatal"


def test_reporter_sequence(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    reporter = ServiceReporter(Notifier(path, watchdog_usec=10_000_000))  # ping every 5 s
    supervisor = FakeSupervisor()
    reporter.supervisor = supervisor
    next_ping = reporter.step(100.0, 100.0)
    assert next_ping == 105.0
    assert received(sock) == [b"STATUS=starting; 2 tracers: 2 starting", b"WATCHDOG=1"]
    assert reporter.step(101.0, next_ping) == 105.0
    assert received(sock) == []  # nothing changed, no ping due
    supervisor.states = {"running": 1, "starting": 1}
    reporter.step(102.0, next_ping)
    assert received(sock) == [b"STATUS=starting; 2 tracers: 1 running, 1 starting"]
    supervisor.states = {"running": 2}
    reporter.ready()
    reporter.ready()  # once only
    assert received(sock) == [b"READY=1\nSTATUS=2 tracers: 2 running"]
    next_ping = reporter.step(105.0, next_ping)
    assert received(sock) == [b"WATCHDOG=1"] and next_ping == 110.0
    supervisor.states = {"running": 1, "backoff": 1}
    reporter.step(106.0, next_ping)
    assert received(sock) == [b"STATUS=2 tracers: 1 running, 1 backoff"]
    supervisor.shutdown_requested = True
    reporter.step(107.0, next_ping)
    reporter.step(108.0, next_ping)
    assert received(sock) == [b"STOPPING=1\nSTATUS=stopping: stopping the tracers"]
    reporter.step(110.0, next_ping)
    assert received(sock) == [b"WATCHDOG=1"]  # pings go on while the tracers stop
    assert reporter.pings == 3


def test_no_ready_after_stopping(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    reporter = ServiceReporter(Notifier(path))
    reporter.stopping()
    reporter.ready()  # e.g. the last starting instance stopped during shutdown
    assert received(sock) == [b"STOPPING=1\nSTATUS=stopping: stopping the tracers"]
