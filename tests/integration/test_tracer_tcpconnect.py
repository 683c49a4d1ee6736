"""tcpconnect: connects to loopback listeners this test opened, IPv4 and IPv6."""

from __future__ import annotations

import os
import socket

import pytest

from tests.integration.agentctl import Agent, wait_for


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
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)):
                pass
            listener.accept()[0].close()

    def counted() -> float | None:
        for s in agent.get("/samples", name="eunomia_tcp_connects_total", latest=True):
            if s["labels"].get("dport") == str(port):
                return s["value"]
        return None

    assert wait_for(lambda: counted() == 5 and 5, 10, "the counter to reach 5") == 5
