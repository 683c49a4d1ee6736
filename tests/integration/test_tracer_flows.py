"""flows: exact bytes and connections of loopback exchanges between this test (the server)
and a child process it runs (the client), per process, role, addresses and server port.

The client sends exactly 12345 bytes and receives exactly 678; the server the reverse.
Both loop until every byte is through, so the totals are exact whatever the segmenting.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, enter_cgroup, joined_cgroup, private_cgroup, wait_for

TRACER = "flows"
UP, DOWN = 12345, 678
METRICS = ("eunomia_flows_sent_bytes_total", "eunomia_flows_received_bytes_total",
           "eunomia_flows_connections_total")

CLIENT = r"""
import os, socket, sys
family, address, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
assert os.read(0, 1) == b"g"
with socket.socket(family) as s:
    s.connect((address, port))
    print(s.getsockname()[1], flush=True)
    s.sendall(b"u" * 12345)
    got = 0
    while got < 678:
        chunk = s.recv(4096)
        assert chunk
        got += len(chunk)
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("flows"), tracers=[TRACER])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _main_instance(agent: Agent) -> str:
    return next(i["id"] for i in agent.instances() if i["tracer"] == TRACER and not i["args"])


Flow = tuple[str, str, str, str, str, str, str]  # cgroup_id, pid, role, family, laddr, raddr, port


def _flows(agent: Agent, instance: str, port: int) -> dict[Flow, list[float]]:
    """{(cgroup_id, pid, role, family, laddr, raddr, port): [sent, received, connections]} for one server port."""
    out: dict[Flow, list[float]] = {}
    for i, metric in enumerate(METRICS):
        for s in agent.get("/samples", name=metric, latest=True, limit=100_000):
            lb = s["labels"]
            if lb["instance"] == instance and lb["port"] == str(port):
                key = (lb["cgroup_id"], lb["pid"], lb["role"], lb["family"], lb["laddr"], lb["raddr"], lb["port"])
                out.setdefault(key, [0.0, 0.0, 0.0])[i] = s["value"]
    return out


class Exchange:
    """A listener in this process and a client child waiting for the go, each side in a
    cgroup of its own (this process joins its cgroup while it serves). The server's
    connection is established in a softirq, often while the client is current: its
    cgroup_id must still be the server's, the listener's owner."""

    def __init__(self, family: int, address: str) -> None:
        self._cgroups = ExitStack()
        self.server_cgroup = self._cgroups.enter_context(private_cgroup("eunomia-flows-server"))
        self.client_cgroup = self._cgroups.enter_context(private_cgroup("eunomia-flows-client"))
        self.server_id = str(os.stat(self.server_cgroup).st_ino)
        self.client_id = str(os.stat(self.client_cgroup).st_ino)
        self.listener = socket.socket(family)
        if address.startswith("::ffff:"):
            self.listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.listener.bind((address, 0))  # listen() in run(): the tracers started meanwhile see it
        self.port = self.listener.getsockname()[1]
        self.child = subprocess.Popen([sys.executable, "-c", CLIENT, str(int(family)), address, str(self.port)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      preexec_fn=enter_cgroup(self.client_cgroup))

    def run(self) -> int:
        with joined_cgroup(self.server_cgroup):
            return self._serve()

    def _serve(self) -> int:
        """Let the client go, serve it; returns the client's local port."""
        assert self.child.stdin is not None and self.child.stdout is not None
        self.listener.listen()  # the owner of the accepted connection: this process
        self.child.stdin.write(b"g")
        self.child.stdin.flush()
        self.listener.settimeout(15)
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(15)
            got = 0
            while got < UP:
                chunk = conn.recv(65536)
                assert chunk, "the client closed early"
                got += len(chunk)
            assert got == UP
            conn.sendall(b"d" * DOWN)
            sport = int(self.child.stdout.readline())
            assert self.child.wait(15) == 0
        return sport

    def close(self) -> None:
        self.listener.close()
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        self._cgroups.close()


@pytest.mark.parametrize(("family", "address", "number"), [
    (socket.AF_INET, "127.0.0.1", "4"),
    (socket.AF_INET6, "::1", "6"),
    (socket.AF_INET6, "::ffff:127.0.0.1", "6"),  # IPv6 sockets talking IPv4: v4-mapped addresses
])
def test_exact_bytes_and_connections_of_both_ends(agent: Agent, family: int, address: str, number: str) -> None:
    instance = _main_instance(agent)
    me = str(os.getpid())
    ex = Exchange(family, address)
    try:
        client_pid = str(ex.child.pid)
        ex.run()
    finally:
        ex.close()
    port = str(ex.port)
    expected = {
        # the client: sent 12345, received 678, made one connection; the port is the remote one
        (ex.client_id, client_pid, "client", number, address, address, port): [float(UP), float(DOWN), 1.0],
        # this process, the server: the reverse, on its listening (local) port
        (ex.server_id, me, "server", number, address, address, port): [float(DOWN), float(UP), 1.0],
    }
    flows = wait_for(lambda: (f := _flows(agent, instance, ex.port)) == expected and f, 15,
                     "the exact bytes and connections of both ends")
    assert flows == expected
    comms = {s["labels"]["comm"] for s in agent.get("/samples", name=METRICS[0], latest=True, limit=100_000)
             if s["labels"]["instance"] == instance and s["labels"]["port"] == port}
    assert comms == {Path(f"/proc/{os.getpid()}/comm").read_text().strip(), Path(sys.executable).name[:15]}


def test_port_and_pid_filters(agent: Agent) -> None:
    ex, other = Exchange(socket.AF_INET, "127.0.0.1"), Exchange(socket.AF_INET, "127.0.0.1")
    me = str(os.getpid())
    try:
        by_port = agent.start(TRACER, ["-P", str(ex.port)])
        by_pid = agent.start(TRACER, ["-p", str(other.child.pid)])
        try:
            agent.wait_state(by_port["id"], "running")
            agent.wait_state(by_pid["id"], "running")
            ex.run()
            other.run()

            def ends(x: Exchange) -> dict[Flow, list[float]]:
                port, lo = str(x.port), "127.0.0.1"
                return {(x.client_id, str(x.child.pid), "client", "4", lo, lo, port): [float(UP), float(DOWN), 1.0],
                        (x.server_id, me, "server", "4", lo, lo, port): [float(DOWN), float(UP), 1.0]}

            # -P: both ends of the exchange on that port.
            wait_for(lambda: _flows(agent, by_port["id"], ex.port) == ends(ex), 15, "both ends of the -P port")
            # -p: the bytes and the connection of that client only (its server is this process).
            client_only = {k: v for k, v in ends(other).items() if k[2] == "client"}
            wait_for(lambda: _flows(agent, by_pid["id"], other.port) == client_only, 15, "the -p client's flow")
            # The main instance sees all four ends.
            main = _main_instance(agent)
            wait_for(lambda: _flows(agent, main, ex.port) == ends(ex)
                     and _flows(agent, main, other.port) == ends(other),
                     15, "both ends of both exchanges in the main instance")
            time.sleep(1.5)  # one more metrics read: nothing else appears in the filtered instances
            ports = {inst["id"]: {s["labels"]["port"] for m in METRICS
                                  for s in agent.get("/samples", name=m, latest=True, limit=100_000)
                                  if s["labels"]["instance"] == inst["id"]} for inst in (by_port, by_pid)}
            assert ports == {by_port["id"]: {str(ex.port)}, by_pid["id"]: {str(other.port)}}
            assert _flows(agent, by_pid["id"], other.port) == client_only
        finally:
            for inst in (by_port, by_pid):
                assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
    finally:
        ex.close()
        other.close()
