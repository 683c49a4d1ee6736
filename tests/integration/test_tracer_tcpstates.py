"""tcpstates: the state changes of loopback connections this test makes, and who owns each socket.

The sequences below are what this kernel (6.18) does on loopback when the client closes
first and the server closes only after it has read the end of the stream: the client's
full socket goes FIN_WAIT1 → FIN_WAIT2 and then straight to CLOSE (the kernel hands the
rest of the close to a separate time-wait socket, whose TIME_WAIT state never passes
through inet_sock_set_state); the server's goes CLOSE_WAIT → LAST_ACK → CLOSE.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, cgroup_id_of, joined_cgroup, private_cgroup, wait_for

TRACER = "tcpstates"

# Connects, reports its local port, closes, and exits, each step when told to.
CLIENT = r"""
import socket, sys
family, address, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = socket.socket(family)
sys.stdin.readline()
c.connect((address, port))
print(c.getsockname()[1], flush=True)
sys.stdin.readline()
c.close()
print("closed", flush=True)
sys.stdin.readline()
"""

CLIENT_SEQUENCE = [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"),
                   ("FIN_WAIT1", "FIN_WAIT2"), ("FIN_WAIT2", "CLOSE")]
SERVER_SEQUENCE = [("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT"),
                   ("CLOSE_WAIT", "LAST_ACK"), ("LAST_ACK", "CLOSE")]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("tcpstates"), tracers=[TRACER])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _transitions(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["oldstate"], e["newstate"]) for e in events]


def _socket_events(agent: Agent, match, **query) -> list[dict]:
    return sorted((e for e in agent.events(**query) if match(e)), key=lambda e: e["ts"])


def _check_times(events: list[dict]) -> None:
    """Time in the old state, and the lifetime at CLOSE as the sum of those times."""
    assert events[0]["delta_ns"] == 0  # the first change the tracer saw of this socket
    assert all(e["delta_ns"] > 0 for e in events[1:])
    assert all("lifetime_ns" not in e for e in events[:-1])
    assert events[-1]["newstate"] == "CLOSE"
    assert events[-1]["lifetime_ns"] == sum(e["delta_ns"] for e in events[1:])


def _tell(child: subprocess.Popen) -> None:
    child.stdin.write("\n")
    child.stdin.flush()


def _drain_and_close(conn: socket.socket) -> None:
    """Close the server side only once the client's FIN is in (no simultaneous close)."""
    conn.settimeout(10)
    assert conn.recv(1) == b""
    conn.close()


@pytest.mark.parametrize(("family", "address", "number", "any_address"),
                         [(socket.AF_INET, "127.0.0.1", 4, "0.0.0.0"), (socket.AF_INET6, "::1", 6, "::")])
def test_client_and_server_sequences_with_owners(agent: Agent, family: int, address: str, number: int,
                                                 any_address: str) -> None:
    me = os.getpid()
    listener = socket.socket(family)
    listener.bind((address, 0))
    listener.listen()
    port = listener.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", CLIENT, str(family), address, str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child_comm = Path(f"/proc/{child.pid}/comm").read_text().strip()
        _tell(child)
        sport = int(child.stdout.readline())
        conn, _ = listener.accept()
        _tell(child)
        assert child.stdout.readline().strip() == "closed"
        _drain_and_close(conn)
        listener.close()
        _tell(child)
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()
        listener.close()

    # The client socket: every event carries the connecting process, although several of
    # these changes ran in softirq context (ACKs received), in whatever task that was.
    client = wait_for(lambda: (ev := _socket_events(agent, lambda e: e["dport"] == port, tracer=TRACER,
                                                    pid=child.pid)) and ev[-1]["newstate"] == "CLOSE" and ev,
                      10, "the client socket's CLOSE")
    assert _transitions(client) == CLIENT_SEQUENCE
    assert [e["sport"] for e in client] == [0, sport, sport, sport, sport]  # no local port before the SYN
    assert len({e["skaddr"] for e in client}) == 1
    for e in client:
        assert (e["family"], e["saddr"], e["daddr"], e["dport"]) == (number, address, address, port)
        assert (e["pid"], e["tid"], e["comm"], e["uid"]) == (child.pid, child.pid, child_comm, os.getuid())
    _check_times(client)

    # The accepted socket: created in softirq while the client's SYN was processed (on
    # loopback, in the client's own context), yet reported as the listening process's.
    server = wait_for(lambda: (ev := _socket_events(agent, lambda e: (e["sport"], e["dport"]) == (port, sport),
                                                    tracer=TRACER)) and ev[-1]["newstate"] == "CLOSE" and ev,
                      10, "the accepted socket's CLOSE")
    assert _transitions(server) == SERVER_SEQUENCE
    assert len({e["skaddr"] for e in server}) == 1 and server[0]["skaddr"] != client[0]["skaddr"]
    for e in server:
        assert (e["family"], e["saddr"], e["daddr"]) == (number, address, address)
        assert (e["pid"], e["tid"]) == (me, me)
    _check_times(server)

    listening = wait_for(lambda: (ev := _socket_events(agent, lambda e: (e["sport"], e["dport"]) == (port, 0),
                                                       tracer=TRACER, pid=me)) and len(ev) == 2 and ev,
                         10, "the listener's two changes")
    assert _transitions(listening) == [("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")]
    assert all((e["saddr"], e["daddr"]) == (address, any_address) for e in listening)
    _check_times(listening)


def test_remote_port_option_counters_and_a_socket_older_than_the_tracer(agent: Agent) -> None:
    connects = 3
    me = os.getpid()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        # A connection opened before the instance starts: its owner is unknown until it is
        # closed. It comes from 127.0.0.2, which tells its events from the new ones.
        old_client = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
        old_server, _ = listener.accept()
        inst = agent.start(TRACER, ["-D", str(port)])
        try:
            agent.wait_state(inst["id"], "running")
            old_server.close()  # the server closes first: the client goes to CLOSE_WAIT in softirq
            mine = lambda: sorted(agent.events(instance=inst["id"]), key=lambda e: e["ts"])  # noqa: E731
            wait_for(lambda: [e for e in mine() if e["newstate"] == "CLOSE_WAIT"], 10, "the old client's CLOSE_WAIT")
            old_client.close()
            here = str(cgroup_id_of(me))
            sports = []
            with private_cgroup() as cgroup, joined_cgroup(cgroup):  # the new connections' owner, elsewhere
                cgroup_id = str(os.stat(cgroup).st_ino)
                for _ in range(connects):
                    client = socket.create_connection(("127.0.0.1", port))
                    sports.append(client.getsockname()[1])
                    conn, _ = listener.accept()
                    client.close()
                    _drain_and_close(conn)

            def closes() -> list[dict]:
                events = mine()
                return events if sum(e["newstate"] == "CLOSE" for e in events) == connects + 1 else []

            events = wait_for(closes, 10, f"{connects + 1} closes to port {port}")
            assert all(e["dport"] == port for e in events)  # only the remote port asked for

            old = [e for e in events if e["saddr"] == "127.0.0.2"]
            assert _transitions(old) == [("ESTABLISHED", "CLOSE_WAIT"), ("CLOSE_WAIT", "LAST_ACK"),
                                         ("LAST_ACK", "CLOSE")]
            # CLOSE_WAIT came in softirq before anything told whose socket it is: no pid at all.
            assert (old[0]["pid"], old[0]["comm"]) == (0, "")
            # close(2) runs in the owner's context: from LAST_ACK on, the closing process.
            assert [e["pid"] for e in old[1:]] == [me, me]
            _check_times(old)

            new = [e for e in events if e["saddr"] != "127.0.0.2"]
            assert len(new) == connects * len(CLIENT_SEQUENCE)
            assert all(e["pid"] == me and e["daddr"] == "127.0.0.1" for e in new)
            connecting = [e for e in new if e["sport"] == 0]  # CLOSE -> SYN_SENT: no local port yet
            assert _transitions(connecting) == CLIENT_SEQUENCE[:1] * connects
            for sport in sports:
                one = [e for e in new if e["sport"] == sport]
                assert _transitions(one) == CLIENT_SEQUENCE[1:]
                assert len({e["skaddr"] for e in one}) == 1
                assert one[0]["skaddr"] in {e["skaddr"] for e in connecting}

            def counters() -> dict[tuple[str, str], float]:
                return {(s["labels"]["cgroup_id"], s["labels"]["newstate"]): s["value"]
                        for s in agent.latest("eunomia_tcpstates_transitions_total", instance=inst["id"])}

            # By the owner's cgroup: the new connections' (from their connect), the old one's
            # CLOSE_WAIT under 0 (owner unknown yet), then that of the task that closed it.
            expected = {(cgroup_id, "SYN_SENT"): connects, (cgroup_id, "ESTABLISHED"): connects,
                        (cgroup_id, "FIN_WAIT1"): connects, (cgroup_id, "FIN_WAIT2"): connects,
                        (cgroup_id, "CLOSE"): connects, ("0", "CLOSE_WAIT"): 1, (here, "LAST_ACK"): 1,
                        (here, "CLOSE"): 1}
            wait_for(lambda: counters() == expected, 10, f"the counters to reach {expected}")

            def lifetimes() -> dict[str, float]:
                return {s["labels"]["cgroup_id"]: s["value"]
                        for s in agent.latest("eunomia_tcpstates_lifetime_seconds_count", instance=inst["id"])}

            # The old connection's birth was not seen: only the new ones are in the histogram.
            wait_for(lambda: lifetimes() == {cgroup_id: connects}, 10, f"{connects} lifetimes in the histogram")
        finally:
            assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204


def test_pid_filter_follows_the_owner_not_the_softirq(agent: Agent) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        child = subprocess.Popen([sys.executable, "-c", CLIENT, str(socket.AF_INET), "127.0.0.1", str(port)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            # The child waits on a pipe until it connects: start the instance for it first.
            inst = agent.start(TRACER, ["-p", str(child.pid)])
            try:
                agent.wait_state(inst["id"], "running")
                _tell(child)
                sport = int(child.stdout.readline())
                conn, _ = listener.accept()
                _tell(child)
                assert child.stdout.readline().strip() == "closed"
                _drain_and_close(conn)
                _tell(child)
                assert child.wait(10) == 0
                events = wait_for(lambda: (ev := sorted(agent.events(instance=inst["id"]), key=lambda e: e["ts"]))
                                  and ev[-1]["newstate"] == "CLOSE" and ev, 10, "the child's CLOSE")
                # Only the child's socket: not the listener's nor the accepted one (this process's),
                # although the accepted socket's first changes ran in the child's context.
                assert _transitions(events) == CLIENT_SEQUENCE
                assert {e["pid"] for e in events} == {child.pid}
                assert [e["sport"] for e in events] == [0, sport, sport, sport, sport]
            finally:
                assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
        finally:
            child.kill()
            child.wait()
