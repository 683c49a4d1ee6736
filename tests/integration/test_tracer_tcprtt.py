"""tcprtt: the smoothed RTT of loopback connections this test makes, N requests and responses.

Why at least N samples: the client sends a request and waits for the response before
sending the next, so each of the N responses reaches the client's socket in a segment of
its own, and tcp:tcp_probe fires for every segment an ESTABLISHED socket receives (pure
ACKs, e.g. from the server's quick-ACK mode at the start, only add to that). Likewise the
server's socket receives each of the N requests in a segment of its own. On loopback the
smoothed RTT is tens of microseconds; we only require below 10 ms.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, joined_cgroup, private_cgroup, wait_for

TRACER = "tcprtt"
EXCHANGES = 50
MESSAGE = b"ping" * 8


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("tcprtt"), tracers=[TRACER])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _histograms(agent: Agent, instance: str) -> dict[tuple[str, str, str, str, str], dict[float, float]]:
    """{(cgroup_id, lport, rport, laddr, raddr): {le: cumulative count}} of one instance."""
    out: dict[tuple[str, str, str, str, str], dict[float, float]] = {}
    for s in agent.get("/samples", name="eunomia_tcprtt_srtt_seconds_bucket", latest=True, limit=100_000):
        labels = s["labels"]
        if labels["instance"] == instance:
            key = (labels["cgroup_id"], labels["lport"], labels["rport"], labels["laddr"], labels["raddr"])
            out.setdefault(key, {})[float(labels["le"])] = s["value"]
    return out


def _exchange(client: socket.socket, server: socket.socket) -> None:
    for _ in range(EXCHANGES):
        client.sendall(MESSAGE)
        got = b""
        while len(got) < len(MESSAGE):
            got += server.recv(len(MESSAGE) - len(got))
        server.sendall(got)
        got = b""
        while len(got) < len(MESSAGE):
            got += client.recv(len(MESSAGE) - len(got))


@pytest.mark.parametrize(("family", "address", "number"), [
    (socket.AF_INET, "127.0.0.1", 4),
    (socket.AF_INET6, "::1", 6),
    (socket.AF_INET6, "::ffff:127.0.0.1", 6),  # an IPv6 socket talking IPv4: a v4-mapped address
])
def test_rtt_of_own_connection_by_port_pair_and_address(agent: Agent, family: int, address: str,
                                                        number: int) -> None:
    me = os.getpid()
    comm = Path("/proc/self/comm").read_text().strip()
    with socket.socket(family) as listener:
        if address.startswith("::ffff:"):
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((address, 0))  # the port is known now; listen() comes after the tracer starts
        port = listener.getsockname()[1]
        inst = agent.start(TRACER, ["-P", str(port), "-b", "-B", "--bylport", "--byrport", "--events"])
        try:
            agent.wait_state(inst["id"], "running")
            listener.listen()
            # connect() from a cgroup of the test's own, the exchange from the test's cgroup:
            # the samples of the client's socket come in softirq, with the server's send
            with private_cgroup() as cgroup:
                with joined_cgroup(cgroup):
                    client = socket.create_connection((address, port))
                cgroup_id = str(os.stat(cgroup).st_ino)
            with client:
                sport = client.getsockname()[1]
                server, _ = listener.accept()
                with server:
                    _exchange(client, server)
            key = (cgroup_id, str(sport), str(port), address, address)

            def settled() -> tuple[dict, list] | None:
                hist = _histograms(agent, inst["id"])
                events = agent.events(instance=inst["id"])
                count = max(hist.get(key, {0: 0}).values())
                return (hist, events) if count >= EXCHANGES and count == len(events) else None

            hist, events = wait_for(settled, 15, f"at least {EXCHANGES} samples, as many as events")
            # -P: only the client's socket (remote port = the listener's); -b/-B and the
            # port labels name it exactly, addresses as inet_ntop writes them.
            assert list(hist) == [key]
            buckets = hist[key]
            total = max(buckets.values())
            # Every srtt below 10 ms: nothing above the 16.384 ms log2 bucket (µs scale).
            assert buckets[max(le for le in buckets if le <= 0.016384)] == total
            for e in events:
                assert (e["family"], e["lport"], e["rport"], e["laddr"], e["raddr"]) == (
                    number, sport, port, address, address)
                assert 0 <= e["srtt_us"] < 10_000 and e["snd_cwnd"] > 0
                # tcp_probe runs in softirq: the process is the socket's owner, who connected.
                assert (e["pid"], e["tid"], e["comm"], e["cgroup_id"]) == (me, me, comm, int(cgroup_id))
            assert len({e["sock_cookie"] for e in events}) == 1
        finally:
            assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204


def test_local_port_and_pid_filters_count_the_accepted_socket(agent: Agent) -> None:
    me = os.getpid()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        mine = agent.start(TRACER, ["-L", str(port), "-p", str(me), "--events"])
        other = agent.start(TRACER, ["-L", str(port), "-p", str(os.getppid()), "--events"])
        try:
            agent.wait_state(mine["id"], "running")
            agent.wait_state(other["id"], "running")
            with private_cgroup() as cgroup:
                with joined_cgroup(cgroup):  # the owner of the accepted connection: this process, there
                    listener.listen()
                cgroup_id = str(os.stat(cgroup).st_ino)
            # the server's socket receives in the softirq of the client's sends (this process, elsewhere)
            with socket.create_connection(("127.0.0.1", port)) as client:
                sport = client.getsockname()[1]
                server, _ = listener.accept()
                with server:
                    _exchange(client, server)

            def settled() -> tuple[float, list] | None:
                hist = _histograms(agent, mine["id"])
                events = agent.events(instance=mine["id"])
                count = max(hist.get((cgroup_id, "0", "0", "", ""), {0: 0}).values())
                return (count, events) if count >= EXCHANGES and count == len(events) else None

            count, events = wait_for(settled, 15, f"at least {EXCHANGES} samples of the server's socket")
            assert list(_histograms(agent, mine["id"])) == [(cgroup_id, "0", "0", "", "")]
            # -L: the server's socket only (local port = the listener's); no labels asked for.
            assert {(e["lport"], e["rport"], e["pid"]) for e in events} == {(port, sport, me)}
            assert all(e["srtt_us"] < 10_000 for e in events)
            # -p with another pid: the same socket is left out (after one more metrics read).
            time.sleep(1.5)
            assert agent.events(instance=other["id"]) == []
            assert _histograms(agent, other["id"]) == {}
        finally:
            for inst in (mine, other):
                assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
