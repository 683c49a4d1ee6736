"""memleak: the allocations of a program this test compiles, which leaks from a known function.

Ground truth: the program (built with frame pointers, and -fno-builtin so that gcc keeps
every allocation) waits on its stdin until the tracer is attached, then, in one go:

* ``eunomia_leak()`` mallocs ``LEAKS`` blocks of ``LEAK_SIZE`` bytes, of which ``main``
  frees ``FREED``: the stack ending in ``eunomia_leak`` holds (LEAKS - FREED) blocks;
* ``eunomia_churn()`` mallocs ``CHURNS`` blocks of ``CHURN_SIZE`` bytes and frees them
  all: its stack holds nothing;
* ``eunomia_mixed()`` uses every other allocator entry point once (sizes in MIXED_*) and
  frees some of the blocks;

then says "done" and pauses (alive, so that its stacks can be symbolised). The counters
must hold exactly these numbers.

The agent reads the kernel's maps only when the instance stops (a metrics interval longer
than the test): the worker's periodic drain (workers/metrics_reader.py) reads every
counter, then symbolises and deletes key by key, so an increment that lands in between
is lost (measured with that reader: up to 10 in 2,000,000 increments over ~250 reads).
That is the worker's read, not the tracer, and would make exact totals flaky here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent, wait_for

PROGRAM = r"""
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

static void wait_for_test(void)
{
    char c;
    if (read(0, &c, 1) != 1)
        _exit(1);
}

static void *leaked[LEAKS];

__attribute__((noinline)) void eunomia_leak(void)
{
    for (int i = 0; i < LEAKS; i++)
        leaked[i] = malloc(LEAK_SIZE);
}

__attribute__((noinline)) void eunomia_churn(void)
{
    void *blocks[CHURNS];
    for (int i = 0; i < CHURNS; i++)
        blocks[i] = malloc(CHURN_SIZE);
    for (int i = 0; i < CHURNS; i++)
        free(blocks[i]);
}

static void *kept[3];

__attribute__((noinline)) void eunomia_mixed(void)
{
    void *a = calloc(10, 100);               /* 1000 */
    a = realloc(a, 3000);                    /* 3000, and the 1000 are freed */
    void *b;
    if (posix_memalign(&b, 64, 640) != 0)    /* 640 */
        _exit(2);
    void *c = aligned_alloc(64, 128);        /* 128 */
    void *d = memalign(64, 192);             /* 192 */
    void *e = valloc(256);                   /* 256 */
    free(b);
    free(d);
    kept[0] = a, kept[1] = c, kept[2] = e;
    __asm__ volatile("" ::: "memory");
}

int main(void)
{
    wait_for_test();               /* the tracer is attached */
    eunomia_leak();
    for (int i = 0; i < FREED; i++)
        free(leaked[i]);
    eunomia_churn();
    eunomia_mixed();
    if (write(1, "done\n", 5) != 5)
        _exit(3);
    pause();
    return 0;
}
"""
LEAKS, FREED, LEAK_SIZE = 100, 40, 4096
CHURNS, CHURN_SIZE = 50, 1000
# eunomia_mixed: allocated calloc 1000, realloc 3000, posix_memalign 640, aligned_alloc 128,
# memalign 192, valloc 256; freed the calloc'ed block (by realloc), the posix_memalign'ed and
# the memalign'ed one
MIXED_ALLOCATED = (1000 + 3000 + 640 + 128 + 192 + 256, 6)
MIXED_FREED = (1000 + 640 + 192, 3)
METRICS = ("allocated_bytes", "allocations", "freed_bytes", "frees")


def _stack(function: str) -> str:
    return f"main [leaker];{function} [leaker]"


@pytest.fixture(scope="module")
def leaker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("memleak")
    (folder / "leaker.c").write_text(PROGRAM)
    defines = {"LEAKS": LEAKS, "FREED": FREED, "LEAK_SIZE": LEAK_SIZE, "CHURNS": CHURNS,
               "CHURN_SIZE": CHURN_SIZE}
    # -fno-builtin: gcc would otherwise drop a malloc whose block is freed unused
    subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-fno-builtin",
                    *(f"-D{k}={v}" for k, v in defines.items()),
                    "-o", str(folder / "leaker"), str(folder / "leaker.c")], check=True)
    return folder / "leaker"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    # no default instance (memleak needs -p); maps read only when an instance stops (see above)
    agent = Agent(tmp_path_factory.mktemp("agent"), tracers=[], extra=["--metrics-interval", "3600"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def leaking(leaker: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([str(leaker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _totals(agent: Agent, instance: str) -> dict[str, dict[str, float]]:
    """metric → {user stack: value} for the instance."""
    out: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        rows = agent.get("/samples", name=f"eunomia_memleak_{metric}_total", latest=True, limit=100_000)
        out[metric] = {s["labels"]["user_stack"]: s["value"] for s in rows if s["labels"]["instance"] == instance}
    return out


def _of(totals: dict[str, dict[str, float]], function: str) -> tuple[float, ...]:
    """(allocated bytes, allocations, freed bytes, frees) under the stacks ending in ``function``."""
    return tuple(sum(v for stack, v in totals[m].items() if stack.endswith(_stack(function))) for m in METRICS)


def _run(agent: Agent, proc: subprocess.Popen[bytes], instance: str) -> dict[str, dict[str, float]]:
    """Release the program until it says done; stop the instance (its worker reads the
    maps one last time) and return its totals."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"x")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"done\n"
    agent.request("POST", f"/instances/{instance}/stop")
    info = agent.wait_state(instance, "stopped")
    assert info["drops"]["kernel"] == 0, info  # no program run skipped, no map full
    return wait_for(lambda: (t := _totals(agent, instance))["allocations"] and t, 10, "the final read's samples")


def test_outstanding_bytes_by_allocation_stack(agent: Agent, leaking: subprocess.Popen[bytes]) -> None:
    inst = agent.start("memleak", ["-p", str(leaking.pid)])
    agent.wait_state(inst["id"], "running")
    totals = _run(agent, leaking, inst["id"])
    leak = (LEAKS * LEAK_SIZE, LEAKS, FREED * LEAK_SIZE, FREED)
    churn = (CHURNS * CHURN_SIZE, CHURNS, CHURNS * CHURN_SIZE, CHURNS)
    mixed = (*MIXED_ALLOCATED, *MIXED_FREED)
    assert _of(totals, "eunomia_leak") == leak, totals
    allocated, blocks, freed, frees = _of(totals, "eunomia_leak")
    assert (allocated - freed, blocks - frees) == ((LEAKS - FREED) * LEAK_SIZE, LEAKS - FREED)
    assert _of(totals, "eunomia_churn") == churn, totals  # nothing outstanding
    assert _of(totals, "eunomia_mixed") == mixed, totals
    # every stack is this process's (-p: uprobes attached to it only)
    rows = agent.get("/samples", name="eunomia_memleak_allocations_total", latest=True, limit=100_000)
    assert {s["labels"]["pid"] for s in rows if s["labels"]["instance"] == inst["id"]} == {str(leaking.pid)}


def test_minimum_size(agent: Agent, leaking: subprocess.Popen[bytes]) -> None:
    """-z: blocks smaller than 2048 bytes are neither counted nor remembered."""
    inst = agent.start("memleak", ["-p", str(leaking.pid), "-z", "2048"])
    agent.wait_state(inst["id"], "running")
    totals = _run(agent, leaking, inst["id"])
    leak = (LEAKS * LEAK_SIZE, LEAKS, FREED * LEAK_SIZE, FREED)
    assert _of(totals, "eunomia_leak") == leak, totals
    assert _of(totals, "eunomia_churn") == (0, 0, 0, 0), totals
    # of eunomia_mixed's blocks only realloc's 3000 bytes count; the 1000 it replaced were not known
    assert _of(totals, "eunomia_mixed") == (3000, 1, 0, 0), totals


def test_pid_is_required(agent: Agent) -> None:
    inst = agent.start("memleak", [])
    info = agent.wait_state(inst["id"], "fatal", timeout=30)
    assert info["restarts"] == 0
    assert "give its pid with -p/--pid" in info["last_error_log"], info
