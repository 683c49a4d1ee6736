"""bindsnoop: binds this test makes to loopback ports it chose, IPv4 and IPv6, and the ones that fail."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.integration.agentctl import Agent, joined_cgroup, private_cgroup, wait_for


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("bindsnoop"), tracers=["bindsnoop"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _bind_free_port(sock: socket.socket, address: str) -> int:
    """Bind ``sock`` to a port that was free a moment ago (asked of the kernel with a probe)."""
    for _ in range(20):
        with socket.socket(sock.family, sock.type) as probe:
            probe.bind((address, 0))
            port = probe.getsockname()[1]
        try:
            sock.bind((address, port))
            return port
        except OSError as exc:  # taken in between by someone else: try another one
            if exc.errno != errno.EADDRINUSE:
                raise
    raise AssertionError("no free port found")


def _mine(agent: Agent, **filters: object) -> list[dict]:
    return sorted(agent.events(**filters), key=lambda e: e["ts"])


def test_ipv4_ipv6_and_address_in_use(agent: Agent) -> None:
    me, tid = os.getpid(), threading.get_native_id()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp4, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as clash, \
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp6:
        port4 = _bind_free_port(tcp4, "127.0.0.1")
        with pytest.raises(OSError) as exc:
            clash.bind(("127.0.0.1", port4))
        assert exc.value.errno == errno.EADDRINUSE
        port6 = _bind_free_port(udp6, "::1")
        # A descriptor not created by socket(2) (a dup): bound fine, protocol unknown.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as original:
            duplicate = socket.socket(fileno=os.dup(original.fileno()))
            with duplicate:
                port_dup = _bind_free_port(duplicate, "127.0.0.1")
                fd_dup = duplicate.fileno()
        fds = (tcp4.fileno(), clash.fileno(), udp6.fileno())

    def events() -> list[dict]:
        return [e for e in _mine(agent, tracer="bindsnoop", pid=me) if e["port"] in (port4, port6, port_dup)]

    # The dup's bind came last: once it is stored, so are the others.
    wait_for(lambda: any(e["port"] == port_dup for e in events()), 10, "the last bind")
    got = [(e["fd"], e["errno"], e["family"], e["addr"], e["port"], e["protocol"], e["type"]) for e in events()]
    assert got == [
        (fds[0], 0, 4, "127.0.0.1", port4, "tcp", "stream"),
        (fds[1], errno.EADDRINUSE, 4, "127.0.0.1", port4, "tcp", "stream"),
        (fds[2], 0, 6, "::1", port6, "udp", "dgram"),
        (fd_dup, 0, 4, "127.0.0.1", port_dup, "unknown", "unknown"),
    ]
    assert {(e["pid"], e["tid"], e["uid"]) for e in events()} == {(me, tid, os.getuid())}


def test_port_and_failed_options_with_exact_counter(agent: Agent) -> None:
    """-p this process -P port -x: only the failed binds to that port are events; the counter
    has every bind to that port by this process, and nothing else, under the cgroup the
    test process binds from (one of its own)."""
    me = os.getpid()
    with socket.socket() as first:
        port = _bind_free_port(first, "127.0.0.1")
    inst = agent.start("bindsnoop", ["-p", str(me), "-P", str(port), "-x"])
    try:
        agent.wait_state(inst["id"], "running")
        with private_cgroup() as cgroup, joined_cgroup(cgroup), socket.socket() as owner, socket.socket() as second, \
                socket.socket() as third, socket.socket() as elsewhere:
            cgroup_id = str(os.stat(cgroup).st_ino)
            owner.bind(("127.0.0.1", port))
            for sock in (second, third):
                with pytest.raises(OSError) as exc:
                    sock.bind(("127.0.0.1", port))
                assert exc.value.errno == errno.EADDRINUSE
            elsewhere.bind(("127.0.0.1", 0))  # another port: filtered out
            failed_fds = {second.fileno(), third.fileno()}

        def counters() -> dict[tuple[str, str, str, str], float]:
            return {(s["labels"]["cgroup_id"], s["labels"]["family"], s["labels"]["protocol"], s["labels"]["errno"]):
                    s["value"] for s in agent.latest("eunomia_bindsnoop_binds_total", instance=inst["id"])}

        want = {(cgroup_id, "4", "tcp", "0"): 1, (cgroup_id, "4", "tcp", str(errno.EADDRINUSE)): 2}
        assert wait_for(lambda: counters() == want and want, 10, f"the counters to reach {want}") == want
        events = wait_for(lambda: len(agent.events(instance=inst["id"])) >= 2 and agent.events(instance=inst["id"]),
                          10, "the two failed binds")
        assert len(events) == 2
        assert {e["fd"] for e in events} == failed_fds
        assert {(e["pid"], e["port"], e["errno"], e["addr"], e["cgroup_id"]) for e in events} == {
            (me, port, errno.EADDRINUSE, "127.0.0.1", int(cgroup_id))}
    finally:
        assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
