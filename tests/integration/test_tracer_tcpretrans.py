"""tcpretrans: retransmits of loopback connections this test makes lose packets on purpose.

An nftables table of our own (created and deleted here) drops, on lo only, the packets
to our listeners' ports; the client's data is then never acknowledged and TCP sends it
again on its retransmission timer. How often depends on timers (RTO 200 ms, doubling
each time, plus the final retransmit that gets through once the rule is gone), so the
tests ask for a plausible lower bound of retransmits, exact ports, addresses and owners,
and a kernel counter equal to the number of events seen for the port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, find_or_install_nft, joined_cgroup, private_cgroup, wait_for

TRACER = "tcpretrans"
PAYLOAD = b"retransmit me" * 10


@pytest.fixture(scope="module")
def nft() -> str:
    return find_or_install_nft("tcpretrans tests drop packets")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, nft: str) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("tcpretrans"), tracers=[TRACER])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


@contextlib.contextmanager
def dropping(nft: str, ports: list[int]) -> Iterator[None]:
    """Drop TCP packets arriving on lo for these ports, in a table of our own."""
    table = f"eunomia_test_tcpretrans_{os.getpid()}"
    rules = "".join(f'    iifname "lo" tcp dport {port} drop\n' for port in ports)
    ruleset = (f"table inet {table} {{\n  chain input {{\n"
               f"    type filter hook input priority 0; policy accept;\n{rules}  }}\n}}\n")
    subprocess.run([nft, "-f", "-"], input=ruleset, text=True, check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([nft, "delete", "table", "inet", table], check=True, capture_output=True)


class Connection:
    """A loopback client/server pair; the client sends, the server must receive it all."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.client = socket.create_connection(("127.0.0.1", self.port))
        self.sport = self.client.getsockname()[1]
        self.server, _ = self.listener.accept()

    def receive_all(self) -> None:
        self.server.settimeout(15)
        data = b""
        while len(data) < len(PAYLOAD):
            chunk = self.server.recv(4096)
            assert chunk, "connection closed early"
            data += chunk
        assert data == PAYLOAD

    def close(self) -> None:
        for s in (self.client, self.server, self.listener):
            s.close()


def _main_instance(agent: Agent) -> str:
    """The module's own instance (the tests start others with arguments)."""
    return next(i["id"] for i in agent.instances() if i["tracer"] == TRACER and not i["args"])


def _retransmits(agent: Agent, instance: str, port: int) -> list[dict]:
    return [e for e in agent.events(instance=instance) if port in (e["sport"], e["dport"])]


def _counters(agent: Agent, instance: str, dport: int) -> dict[str, float]:
    """{owner's cgroup id: retransmits} to one port."""
    return {s["labels"]["cgroup_id"]: s["value"]
            for s in agent.latest("eunomia_tcpretrans_retransmits_total", instance=instance, dport=dport)}


def test_retransmits_of_own_connection_with_owner_and_counter(agent: Agent, nft: str) -> None:
    me = os.getpid()
    comm = Path("/proc/self/comm").read_text().strip()
    instance = _main_instance(agent)
    with private_cgroup() as cgroup, joined_cgroup(cgroup):  # the owner connects from a cgroup of its own
        conn = Connection()
        cgroup_id = str(os.stat(cgroup).st_ino)
    try:
        with dropping(nft, [conn.port]):
            conn.client.sendall(PAYLOAD)
            # 200 ms, then 400 ms: two retransmits within a second or so.
            wait_for(lambda: len(_retransmits(agent, instance, conn.port)) >= 2, 15, "two retransmits")
        conn.receive_all()  # the next retransmit gets through
    finally:
        conn.close()

    def settled() -> list[dict] | None:
        events = _retransmits(agent, instance, conn.port)
        return events if _counters(agent, instance, conn.port) == {cgroup_id: len(events)} else None

    # Every retransmit on our port is an event, and the kernel counted exactly those, under
    # the owner's cgroup (the timer that sends them runs in whatever task it interrupted).
    events = wait_for(settled, 15, "the counter to equal the events for our port")
    assert len(events) >= 2
    for e in events:
        # Only the client retransmits (the server sent no data), always the same socket.
        assert (e["family"], e["saddr"], e["sport"], e["daddr"], e["dport"]) == (
            4, "127.0.0.1", conn.sport, "127.0.0.1", conn.port)
        assert e["state"] == "ESTABLISHED" and e["err"] == 0
        # Sent from the retransmission timer, in whatever task was running: the owner is
        # the process that connected.
        assert (e["pid"], e["tid"], e["comm"], e["uid"], e["cgroup_id"]) == (me, me, comm, os.getuid(),
                                                                            int(cgroup_id))
    assert len({e["skaddr"] for e in events}) == 1


def test_port_option_and_a_connection_older_than_the_tracer(agent: Agent, nft: str) -> None:
    me = os.getpid()
    main = _main_instance(agent)
    other, traced = Connection(), Connection()
    try:
        # Both connections exist before this instance: it cannot know their owner.
        inst = agent.start(TRACER, ["-P", str(traced.port)])
        try:
            agent.wait_state(inst["id"], "running")
            with dropping(nft, [other.port, traced.port]):
                other.client.sendall(PAYLOAD)
                traced.client.sendall(PAYLOAD)
                wait_for(lambda: len(agent.events(instance=inst["id"])) >= 2, 15, "two retransmits to the port")
                wait_for(lambda: len(_retransmits(agent, main, other.port)) >= 2, 15, "two to the other port")
            traced.receive_all()
            other.receive_all()

            def settled() -> list[dict] | None:
                events = agent.events(instance=inst["id"])
                return events if _counters(agent, inst["id"], traced.port) == {"0": len(events)} else None

            events = wait_for(settled, 15, "the instance's counter to equal its events")
            assert len(events) >= 2
            for e in events:
                assert (e["sport"], e["dport"], e["saddr"], e["daddr"]) == (
                    traced.sport, traced.port, "127.0.0.1", "127.0.0.1")
                assert (e["pid"], e["tid"], e["comm"]) == (0, 0, "")  # owner unknown: no guess
            series = [s for s in agent.get("/samples", name="eunomia_tcpretrans_retransmits_total", latest=True)
                      if s["labels"]["instance"] == inst["id"]]
            # the other port: not counted; the owner, so its cgroup, not known: 0
            assert [(s["labels"]["dport"], s["labels"]["cgroup_id"]) for s in series] == [(str(traced.port), "0")]
            # The tracer that was running when the connections were made knows their owner.
            wait_for(lambda: {e["pid"] for e in _retransmits(agent, main, traced.port)} == {me}, 10,
                     "the main instance's retransmits of the traced port, by this process")
            assert {e["pid"] for e in _retransmits(agent, main, other.port)} == {me}
        finally:
            assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
    finally:
        other.close()
        traced.close()
