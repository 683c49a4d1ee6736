"""tcpdrop: packets this test makes the kernel drop, with the reason and the code that dropped them.

skb:kfree_skb carries no addresses or ports, so a drop is recognised by its reason, its
EtherType and the kernel function at `location` (resolved with /proc/kallsyms). Exact
pids and counts come from drops that happen inside a system call of a child process (a
unix socket closed with unread datagrams, netlink sends to a port nobody has): they run
in the child's context, so a -p filter on the child sees those and nothing else. Drops
of loopback IP traffic run in softirq context (usually the sender's, not always), so
there the test checks reason, protocol and location of at least the datagrams it sent,
and that the kernel counter equals the events stored.
"""

from __future__ import annotations

import bisect
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.integration.agentctl import REPO, Agent, wait_for
from workers.spec import load_spec

TRACER = "tcpdrop"
FORMAT = Path("/sys/kernel/tracing/events/skb/kfree_skb/format")
UNREAD = 3  # datagrams left in a unix socket that is closed: SOCKET_CLOSE each
NETLINK_SENDS = 4  # unicasts to a netlink port nobody bound: NOT_SPECIFIED each

CHILD = r"""
import socket, sys
unread, sends = int(sys.argv[1]), int(sys.argv[2])
sys.stdin.readline()
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
for _ in range(unread):
    a.send(b"never read")
b.close()
a.close()
n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_USERSOCK)
n.bind((0, 0))
for _ in range(sends):
    try:
        n.sendto(b"nobody listens", (0x7FFFFFF0, 0))
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit("a netlink send to an unbound port was accepted")
n.close()
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("tcpdrop"), tracers=[TRACER])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


@cache
def _kallsyms() -> tuple[list[int], list[str]]:
    symbols = []
    with open("/proc/kallsyms") as fh:
        for line in fh:
            addr, kind, name = line.split()[:3]
            if kind in "tT":
                symbols.append((int(addr, 16), name))
    symbols.sort()
    assert symbols and symbols[-1][0] != 0, "/proc/kallsyms hides addresses (kptr_restrict): cannot resolve"
    return [a for a, _ in symbols], [n for _, n in symbols]


def _function(address: int) -> str:
    addresses, names = _kallsyms()
    i = bisect.bisect_right(addresses, address) - 1
    assert i >= 0, f"{address:#x} is below every kernel symbol"
    return names[i]


def _main_instance(agent: Agent) -> str:
    """The module's own instance (the tests start others with arguments)."""
    return next(i["id"] for i in agent.instances() if i["tracer"] == TRACER and not i["args"])


def _counters(agent: Agent, instance: str) -> dict[tuple[str, str], float]:
    return {(s["labels"]["reason"], s["labels"]["protocol"]): s["value"]
            for s in agent.get("/samples", name="eunomia_tcpdrop_drops_total", latest=True)
            if s["labels"]["instance"] == instance}


def test_reason_names_are_this_kernels() -> None:
    """The spec's reason names are those of the running kernel's tracepoint format."""
    fmt = FORMAT.read_text().split("__print_symbolic(REC->reason", 1)[1]
    kernel = {int(n): name for n, name in re.findall(r'\{ (\d+), "(\w+)" \}', fmt)}
    spec = load_spec(REPO / "bpf" / TRACER)
    reason = next(f for f in spec.event.fields if f.name == "reason")
    assert reason.enum == kernel
    assert spec.metrics[0].labels[0].enum == kernel
    # no cgroup_id: the task current at a drop is mostly not the packet's (see the description)
    assert [label.name for label in spec.metrics[0].labels] == ["reason", "protocol"]


def test_drops_in_a_system_call_exact_pid_and_counts_and_the_all_option(agent: Agent) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(UNREAD), str(NETLINK_SENDS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        comm = Path(f"/proc/{child.pid}/comm").read_text().strip()
        default = agent.start(TRACER, ["-p", str(child.pid)])
        everything = agent.start(TRACER, ["-p", str(child.pid), "--all"])
        try:
            agent.wait_state(default["id"], "running")
            agent.wait_state(everything["id"], "running")
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "done"
            expected_counts = {("SOCKET_CLOSE", "0"): UNREAD, ("NOT_SPECIFIED", "0"): NETLINK_SENDS}
            for inst in (default, everything):  # the counters count NOT_SPECIFIED either way
                wait_for(lambda i=inst: _counters(agent, i["id"]) == expected_counts, 10,
                         f"{inst['id']}'s counters to reach {expected_counts}")

            # The counters are complete: the events cannot grow beyond what they counted.
            closes = wait_for(lambda: len(ev := agent.events(instance=default["id"])) >= UNREAD and ev, 10,
                              "the SOCKET_CLOSE drops")
            all_drops = wait_for(lambda: len(ev := agent.events(instance=everything["id"])) >= UNREAD + NETLINK_SENDS
                                 and ev, 10, "every drop with --all")
            assert len(closes) == UNREAD and len(all_drops) == UNREAD + NETLINK_SENDS
        finally:
            for inst in (default, everything):
                assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()

    for e in closes + all_drops:
        assert (e["pid"], e["tid"], e["comm"]) == (child.pid, child.pid, comm)
        assert e["protocol"] == "0" and e["rx_sk"] == 0  # unix and netlink packets have no EtherType
    # By default: only drops with a reason.
    assert {(e["reason"], _function(e["location"])) for e in closes} == {("SOCKET_CLOSE", "unix_release_sock")}
    found = sorted((e["reason"], _function(e["location"])) for e in all_drops)
    assert found == sorted([("SOCKET_CLOSE", "unix_release_sock")] * UNREAD
                           + [("NOT_SPECIFIED", "netlink_unicast")] * NETLINK_SENDS)


@pytest.mark.parametrize(("kind", "family", "address", "protocol", "function"), [
    (socket.SOCK_DGRAM, socket.AF_INET, "127.0.0.1", "IPv4", "__udp4_lib_rcv"),
    (socket.SOCK_DGRAM, socket.AF_INET6, "::1", "IPv6", "__udp6_lib_rcv"),
    (socket.SOCK_STREAM, socket.AF_INET, "127.0.0.1", "IPv4", "tcp_v4_rcv"),
])
def test_loopback_packet_to_a_closed_port_is_no_socket(agent: Agent, kind: int, family: int, address: str,
                                                       protocol: str, function: str) -> None:
    packets = 5
    with socket.socket(family, kind) as probe:  # a port that was free a moment ago, and is closed now
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    instance = _main_instance(agent)
    start = time.time_ns()
    for _ in range(packets):
        with socket.socket(family, kind) as s:
            if kind == socket.SOCK_DGRAM:
                s.sendto(b"to nobody", (address, port))
            else:
                with pytest.raises(ConnectionRefusedError):  # our SYN is dropped, a RST comes back
                    s.connect((address, port))
    end = time.time_ns()

    def ours() -> list[dict]:
        # No ports in the tracepoint: our packets are the NO_SOCKET drops by this receive
        # function during our sends (a little margin for the clock conversion).
        return [e for e in agent.events(instance=instance, since=start - 50_000_000, until=end + 50_000_000)
                if e["reason"] == "NO_SOCKET" and e["protocol"] == protocol and _function(e["location"]) == function]

    events = wait_for(lambda: len(ev := ours()) >= packets and ev, 10, f"{packets} NO_SOCKET drops")
    assert all(e["rx_sk"] == 0 for e in events)  # no socket received them

    def consistent() -> bool:
        stored = [e for e in agent.events(instance=instance) if (e["reason"], e["protocol"]) == ("NO_SOCKET", protocol)]
        return _counters(agent, instance).get(("NO_SOCKET", protocol)) == len(stored)

    # Every NO_SOCKET drop the kernel counted became an event, and the other way round.
    wait_for(consistent, 15, "the NO_SOCKET counter to equal the NO_SOCKET events")
