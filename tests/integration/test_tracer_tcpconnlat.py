"""tcpconnlat: connects this test makes to its own loopback listeners, one of them delayed.

The delayed connect: an nftables table of our own (created and deleted here) drops, on lo
only, SYNs to one listener's port. Its rule counts what it dropped; once it has dropped
the first SYN the table is deleted, so a retransmitted SYN gets through. The kernel sends
the first retransmission of a SYN after the initial retransmission timeout of 1 s
(TCP_TIMEOUT_INIT), so that connect took at least 1 s, whatever the scheduling.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, find_or_install_nft, joined_cgroup, private_cgroup, wait_for

TRACER = "tcpconnlat"
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def nft() -> str:
    return find_or_install_nft("tcpconnlat tests drop a SYN")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("tcpconnlat"), tracers=[TRACER])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _main_instance(agent: Agent) -> str:
    """The module's own instance (the tests start others with arguments)."""
    return next(i["id"] for i in agent.instances() if i["tracer"] == TRACER and not i["args"])


def _events(agent: Agent, instance: str, dport: int) -> list[dict]:
    return [e for e in agent.events(instance=instance) if e["dport"] == dport]


def _histogram_counts(agent: Agent, instance: str, dport: int) -> dict[str, int]:
    """{cgroup id: connects} of one destination port."""
    return {s["labels"]["cgroup_id"]: int(s["value"])
            for s in agent.latest("eunomia_tcpconnlat_latency_seconds_count", instance=instance, dport=dport)}


@contextlib.contextmanager
def _listener(family: int = socket.AF_INET, address: str = "127.0.0.1") -> Iterator[socket.socket]:
    with socket.socket(family) as listener:
        listener.bind((address, 0))
        listener.listen(16)
        yield listener


@contextlib.contextmanager
def _dropping_first_syn(nft: str, port: int) -> Iterator[tuple[Callable[[], int], Callable[[], int]]]:
    """Drop SYNs arriving on lo for this port, counting them, in a table of our own."""
    table = f"eunomia_test_tcpconnlat_{os.getpid()}_{port}"
    ruleset = (f"table inet {table} {{\n  chain input {{\n"
               f"    type filter hook input priority 0; policy accept;\n"
               f'    iifname "lo" tcp dport {port} tcp flags & (syn | ack) == syn counter drop\n'
               "  }\n}\n")
    subprocess.run([nft, "-f", "-"], input=ruleset, text=True, check=True, capture_output=True)
    deleted = False

    def dropped() -> int:
        out = subprocess.run([nft, "list", "table", "inet", table], check=True, capture_output=True, text=True)
        match = re.search(r"counter packets (\d+)", out.stdout)
        assert match, out.stdout
        return int(match.group(1))

    def delete() -> int:
        nonlocal deleted
        count = dropped()
        subprocess.run([nft, "delete", "table", "inet", table], check=True, capture_output=True)
        deleted = True
        return count

    try:
        yield dropped, delete
    finally:
        if not deleted:
            subprocess.run([nft, "delete", "table", "inet", table], check=True, capture_output=True)


def _delayed_connect(nft: str, listener: socket.socket) -> tuple[int, int]:
    """Connect to ``listener`` with its first SYN dropped; returns (local port, SYNs dropped)."""
    port = listener.getsockname()[1]
    client = socket.socket()
    client.settimeout(30)
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            client.connect(("127.0.0.1", port))
        except BaseException as exc:  # reported by the test below
            failure.append(exc)

    with _dropping_first_syn(nft, port) as (dropped, delete):
        thread = threading.Thread(target=connect)
        thread.start()
        wait_for(lambda: dropped() >= 1, 10, "the first SYN to be dropped")
        count = delete()
    thread.join(30)
    assert not thread.is_alive() and not failure, failure
    lport = client.getsockname()[1]
    listener.accept()[0].close()
    client.close()
    return lport, count


@pytest.mark.parametrize(("family", "address", "number"), [(socket.AF_INET, "127.0.0.1", 4),
                                                            (socket.AF_INET6, "::1", 6)])
def test_loopback_connects_exact_ports_pid_and_histogram(agent: Agent, family: int, address: str,
                                                         number: int) -> None:
    me = os.getpid()
    comm = Path("/proc/self/comm").read_text().strip()
    instance = _main_instance(agent)
    lports = []
    with _listener(family, address) as listener, private_cgroup() as cgroup, joined_cgroup(cgroup):
        cgroup_id = str(os.stat(cgroup).st_ino)
        dport = listener.getsockname()[1]
        for _ in range(3):
            with socket.create_connection((address, dport)) as client:
                lports.append(client.getsockname()[1])
                listener.accept()[0].close()

    events = wait_for(lambda: len(e := _events(agent, instance, dport)) >= 3 and e, 10, "three connect events")
    assert len(events) == 3
    assert sorted(e["lport"] for e in events) == sorted(lports)
    for e in events:
        assert (e["pid"], e["tid"], e["comm"]) == (me, me, comm)
        assert (e["family"], e["saddr"], e["daddr"], e["dport"]) == (number, address, address, dport)
        assert 0 < e["latency_ns"] < 30 * SECOND  # a generous sanity bound, not a timing assertion
    # The kernel's histogram counted exactly these three connects for this port, in the cgroup.
    assert wait_for(lambda: _histogram_counts(agent, instance, dport) == {cgroup_id: 3}, 10,
                    "the histogram count of 3")


def test_delayed_handshake_and_min_ms_option(agent: Agent, nft: str) -> None:
    me = os.getpid()
    main = _main_instance(agent)
    inst = agent.start(TRACER, ["-m", "500", "-p", str(me)])
    try:
        agent.wait_state(inst["id"], "running")
        # from a cgroup of the test's own: the delayed handshake ends in a timer's softirq,
        # whatever task it interrupted; the histogram still has the connecting task's cgroup
        with _listener() as fast, _listener() as slow, private_cgroup() as cgroup, joined_cgroup(cgroup):
            cgroup_id = str(os.stat(cgroup).st_ino)
            fast_port, slow_port = fast.getsockname()[1], slow.getsockname()[1]
            with socket.create_connection(("127.0.0.1", fast_port)) as client:
                fast_lport = client.getsockname()[1]
                fast.accept()[0].close()
            slow_lport, dropped = _delayed_connect(nft, slow)
        assert dropped >= 1

        # The main instance sees both connects; the delayed one took at least the 1 s
        # initial SYN retransmission timeout.
        slow_events = wait_for(lambda: _events(agent, main, slow_port), 10, "the delayed connect")
        assert [e["lport"] for e in slow_events] == [slow_lport]
        assert slow_events[0]["pid"] == me
        assert SECOND <= slow_events[0]["latency_ns"] < 60 * SECOND
        fast_events = wait_for(lambda: _events(agent, main, fast_port), 10, "the fast connect")
        assert [e["lport"] for e in fast_events] == [fast_lport]

        # -m 500: only the delayed connect is an event; the histogram still counts both.
        assert wait_for(lambda: _histogram_counts(agent, inst["id"], fast_port) == {cgroup_id: 1}, 10,
                        "fast connect counted")
        assert wait_for(lambda: _histogram_counts(agent, inst["id"], slow_port) == {cgroup_id: 1}, 10,
                        "slow connect counted")
        events = wait_for(lambda: agent.events(instance=inst["id"]), 10, "the -m 500 instance's event")
        assert [(e["dport"], e["lport"]) for e in events] == [(slow_port, slow_lport)]
        assert events[0]["latency_ns"] >= SECOND
        # In the kernel's histogram too, the delayed connect lies above half a second.
        buckets = {float(s["labels"]["le"]): s["value"]
                   for s in agent.get("/samples", name="eunomia_tcpconnlat_latency_seconds_bucket", latest=True)
                   if s["labels"]["instance"] == inst["id"] and s["labels"]["dport"] == str(slow_port)}
        assert buckets and all(count == 0 for le, count in buckets.items() if le < 0.5), buckets
        assert buckets[max(buckets)] == 1
    finally:
        assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
