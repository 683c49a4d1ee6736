"""sigsnoop: signals this test sends to a child it spawned, and the SIGCHLD the child's death sends back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, enter_cgroup, joined_cgroup, private_cgroup, wait_for

# The child ignores SIGUSR2 and blocks SIGUSR1: a first SIGUSR1 is delivered (left pending),
# a second one finds it already pending, a SIGUSR2 is ignored, SIGTERM (default action) kills it.
CHILD = """
import signal, sys
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("ready", flush=True)
sys.stdin.read()
"""
CLD_KILLED = 2  # si_code of the SIGCHLD for a child killed by a signal
SI_USER, SI_TKILL = 0, -6


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("sigsnoop"), tracers=["sigsnoop"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def _spawn_child(cgroup: Path | None = None) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             preexec_fn=cgroup and enter_cgroup(cgroup))
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def _kill_and_reap(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait(10) == -signal.SIGTERM
    assert child.stdin is not None and child.stdout is not None
    child.stdin.close()
    child.stdout.close()


def _disposition_result(sig: int) -> str:
    """What the kernel does with ``sig`` sent to this (main) thread now: a default-ignored
    signal with no handler that is not blocked is ignored, otherwise it is left pending."""
    ignored = signal.getsignal(sig) in (signal.SIG_DFL, signal.SIG_IGN) and sig not in signal.pthread_sigmask(
        signal.SIG_BLOCK, [])
    return "ignored" if ignored else "delivered"


def _by_ts(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda e: e["ts"])


def test_signals_sent_to_a_child_and_its_sigchld(agent: Agent) -> None:
    assert threading.current_thread() is threading.main_thread()  # the child's parent thread is this one
    me = os.getpid()
    child = _spawn_child()
    os.kill(child.pid, signal.SIGUSR1)
    os.kill(child.pid, signal.SIGUSR1)
    os.kill(child.pid, signal.SIGUSR2)
    _kill_and_reap(child)
    expected_sigchld = _disposition_result(signal.SIGCHLD)

    # The dying child notifies its parent (this thread): the child is the sender. Once this
    # last signal is stored, so are the earlier ones.
    sigchld = wait_for(lambda: [e for e in agent.events(tracer="sigsnoop", pid=child.pid) if e["tpid"] == me],
                       10, "the SIGCHLD from the dying child")
    assert len(sigchld) == 1
    e = sigchld[0]
    assert (e["sig"], e["code"], e["result"], e["group"]) == (signal.SIGCHLD, CLD_KILLED, expected_sigchld, 1)
    assert e["tid"] == child.pid

    events = _by_ts([e for e in agent.events(tracer="sigsnoop", pid=me) if e["tpid"] == child.pid])
    assert [(e["sig"], e["result"]) for e in events] == [
        (signal.SIGUSR1, "delivered"), (signal.SIGUSR1, "already_pending"),
        (signal.SIGUSR2, "ignored"), (signal.SIGTERM, "delivered")]
    for e in events:
        assert (e["pid"], e["tid"], e["uid"]) == (me, threading.get_native_id(), os.getuid())
        assert (e["code"], e["si_errno"], e["group"]) == (SI_USER, 0, 1)  # kill(2): to the whole process
        assert e["tcomm"] == os.path.basename(sys.executable)[:15]  # the child's comm: the program it executed


def test_signal_to_one_thread(agent: Agent) -> None:
    """tgkill(2) on this very thread: one thread, not the process, and SI_TKILL."""
    sig = signal.SIGURG  # ignored by default: harmless to send to ourselves
    expected = _disposition_result(sig)
    tid = threading.get_native_id()
    signal.pthread_kill(threading.get_ident(), sig)

    def mine() -> list[dict]:
        return [e for e in agent.events(tracer="sigsnoop", pid=os.getpid()) if e["sig"] == sig and e["tpid"] == tid]

    events = wait_for(mine, 10, "the SIGURG sent to this thread")
    assert len(events) == 1
    e = events[0]
    assert (e["tid"], e["code"], e["group"], e["result"]) == (tid, SI_TKILL, 0, expected)


def test_signal_and_failed_options_with_exact_counter(agent: Agent) -> None:
    """-p (sender) -s SIGUSR1 -x: only undelivered SIGUSR1s from this process are events;
    the counter has every SIGUSR1 this process sent, and nothing else, under the sender's
    cgroup (the test process sends from a cgroup of its own to a child in another one)."""
    me = os.getpid()
    inst = agent.start("sigsnoop", ["-p", str(me), "-s", str(int(signal.SIGUSR1)), "-x"])
    try:
        agent.wait_state(inst["id"], "running")
        with private_cgroup() as sender, private_cgroup() as target:
            child = _spawn_child(target)
            sender_id = str(os.stat(sender).st_ino)
            with joined_cgroup(sender):
                for _ in range(3):
                    os.kill(child.pid, signal.SIGUSR1)  # delivered, then already pending twice
                os.kill(child.pid, signal.SIGUSR2)  # another signal: filtered out
                _kill_and_reap(child)

        def counters() -> dict[tuple[str, str, str], float]:
            return {(s["labels"]["cgroup_id"], s["labels"]["sig"], s["labels"]["result"]): s["value"]
                    for s in agent.latest("eunomia_sigsnoop_signals_total", instance=inst["id"])}

        usr1 = str(int(signal.SIGUSR1))
        want = {(sender_id, usr1, "delivered"): 1, (sender_id, usr1, "already_pending"): 2}
        assert wait_for(lambda: counters() == want and want, 10, f"the counters to reach {want}") == want
        events = wait_for(lambda: len(agent.events(instance=inst["id"])) >= 2 and agent.events(instance=inst["id"]),
                          10, "the two undelivered SIGUSR1s")
        assert len(events) == 2
        assert {(e["pid"], e["tpid"], e["sig"], e["result"]) for e in events} == {
            (me, child.pid, signal.SIGUSR1, "already_pending")}
    finally:
        assert agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
