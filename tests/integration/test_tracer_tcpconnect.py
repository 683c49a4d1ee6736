"""tcpconnect: connects to loopback listeners this test opened, IPv4 and IPv6."""

from __future__ import annotations

import os
import socket

import pytest

from tests.integration.agentctl import Agent, joined_cgroup, private_cgroup, wait_for


@pytest.mark.parametrize(("family", "address", "number"), [(socket.AF_INET, "127.0.0.1", 4),
                                                            (socket.AF_INET6, "::1", 6)])
def test_connect_to_loopback_listener(agent: Agent, family: int, address: str, number: int) -> None:
    with socket.socket(family) as listener:
        listener.bind((address, 0))
        listener.listen()
        dport = listener.getsockname()[1]
        with socket.socket(family) as client:
            client.connect((address, dport))
            sport = client.getsockname()[1]
            conn, _ = listener.accept()
            conn.close()

    def mine() -> list[dict]:
        return [e for e in agent.events(tracer="tcpconnect", pid=os.getpid()) if e["dport"] == dport]

    events = wait_for(mine, 10, f"the IPv{number} connect to port {dport}")
    assert len(events) == 1
    e = events[0]
    assert (e["family"], e["saddr"], e["daddr"], e["sport"], e["dport"]) == (number, address, address, sport, dport)
    assert e["result"] == "established" and e["latency_ns"] > 0


def test_refused_connect_is_reported_failed(agent: Agent) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: the connect is refused
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))
    events = wait_for(lambda: [e for e in agent.events(tracer="tcpconnect", pid=os.getpid()) if e["dport"] == port],
                      10, "the refused connect")
    assert [e["result"] for e in events] == ["failed"]


def test_connect_counter_in_kernel_reaches_the_store(agent: Agent) -> None:
    """Five connects from a cgroup of the test's own: the counter and the latency histogram
    of that cgroup."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        with private_cgroup() as cgroup, joined_cgroup(cgroup):
            cgroup_id = os.stat(cgroup).st_ino
            for _ in range(5):
                with socket.create_connection(("127.0.0.1", port)):
                    pass
                listener.accept()[0].close()

    def counted() -> dict[str, float]:
        return {s["labels"]["cgroup_id"]: s["value"] for s in agent.latest("eunomia_tcp_connects_total", dport=port)}

    assert wait_for(lambda: counted() == {str(cgroup_id): 5}, 10, "the counter to reach 5 in the cgroup")
    # nothing else connected from that cgroup
    wait_for(lambda: [s["value"] for s in agent.latest("eunomia_tcp_connect_latency_seconds_count",
                                                       cgroup_id=cgroup_id)] == [5], 10, "5 latencies in the cgroup")
