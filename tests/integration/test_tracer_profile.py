"""profile: CPU samples of a program this test compiles, which spins in a known function."""

from __future__ import annotations

import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import (
    EUNOMIACTL,
    REPO,
    Agent,
    cgroup_id_of,
    child_in_cgroup,
    compile_c,
    private_cgroup,
    wait_for,
)

PROGRAM = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
__attribute__((noinline)) double eunomia_spin(double seconds)
{
    struct timespec a, b;
    double x = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        for (int i = 0; i < 100000; i++)
            x += i * 0.5;
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < seconds);
    return x;
}
int main(void)
{
    (void)getchar();           /* wait until the profiler is attached */
    double x = eunomia_spin(SPIN_SECONDS);
    printf("%f\n", x);
    fflush(stdout);
    pause();                   /* stay alive so that the stacks can be symbolised */
    return 0;
}
"""
SPIN_SECONDS = 2.0
FREQUENCY = 99


@pytest.fixture(scope="module")
def spinner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(tmp_path_factory.mktemp("profile"), "spinner", PROGRAM,
                     ["-O1", "-fno-omit-frame-pointer", f"-DSPIN_SECONDS={SPIN_SECONDS}"])


@pytest.fixture
def spinning(spinner: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The spinner, waiting for "go", in a cgroup of its own."""
    with private_cgroup() as cgroup, child_in_cgroup([str(spinner)], cgroup) as proc:
        yield proc


def _run_spin(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    proc.stdout.readline()  # printed after the spin: it has burnt its CPU time now


def test_samples_land_in_the_spinning_function(tmp_path: Path, spinning: subprocess.Popen[bytes]) -> None:
    agent = Agent(tmp_path, tracers=[])
    try:
        agent.wait_running()
        inst = agent.start("profile", ["-F", str(FREQUENCY), "-p", str(spinning.pid), "-U"])
        agent.wait_state(inst["id"], "running")
        _run_spin(spinning)
        spun = time.time_ns()
        expected = FREQUENCY * SPIN_SECONDS

        def samples() -> list[dict] | None:
            """A read made after the spin (one made partway through may pass the total)."""
            rows = [s for s in agent.get("/samples", name="eunomia_profile_samples_total", latest=True)
                    if s["labels"]["instance"] == inst["id"]]
            done = rows and min(s["ts"] for s in rows) > spun
            return rows if done and sum(s["value"] for s in rows) >= 0.5 * expected else None

        rows = wait_for(samples, 15, "the samples of the spinning process")
        cgroup_id = cgroup_id_of(spinning.pid)
        time.sleep(1.5)  # one more drain: the totals must stay (the worker keeps them)
        later = {s["labels"]["user_stack"]: s["value"] for s in agent.get(
            "/samples", name="eunomia_profile_samples_total", latest=True) if s["labels"]["instance"] == inst["id"]}
    finally:
        agent.stop()
    assert {s["labels"]["pid"] for s in rows} == {str(spinning.pid)}  # -p, in the kernel
    assert {s["labels"]["cgroup_id"] for s in rows} == {str(cgroup_id)} != {str(cgroup_id_of(os.getpid()))}
    assert {s["labels"]["comm"] for s in rows} == {"spinner"}
    assert all(s["labels"]["kernel_stack"] == "" for s in rows)  # -U: no kernel stacks
    total = sum(s["value"] for s in rows)
    spin_stack = "main [spinner];eunomia_spin [spinner]"
    in_spin = sum(s["value"] for s in rows if s["labels"]["user_stack"].endswith(spin_stack))
    # Sampling is statistical: at 99 Hz over 2 s about 198 samples fall in the spin loop; we
    # require at least half of them and that nearly all of the process's samples are there.
    assert in_spin >= 0.5 * FREQUENCY * SPIN_SECONDS
    assert in_spin >= 0.9 * total
    assert sum(later.values()) >= total  # drained maps, monotonic totals


def test_trace_prints_folded_stacks_and_a_flame_graph(tmp_path: Path, spinning: subprocess.Popen[bytes]) -> None:
    svg = tmp_path / "flame.svg"
    trace = subprocess.Popen([*EUNOMIACTL, "trace", "profile", "-F", str(FREQUENCY), "-p", str(spinning.pid),
                              "--duration", "8", "--folded", "--flamegraph", str(svg)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert trace.stderr is not None
    assert "Hit Ctrl-C to end" in trace.stderr.readline()  # attached: from here on every sample counts
    _run_spin(spinning)
    out, err = trace.communicate(timeout=60)
    assert trace.returncode == 0, err
    lines = [line.rsplit(" ", 1) for line in out.splitlines()]
    spin = [(stack, float(n)) for stack, n in lines if stack.startswith("spinner;") and "eunomia_spin" in stack]
    assert spin and sum(n for _, n in spin) >= 0.5 * FREQUENCY * SPIN_SECONDS, out
    assert spin[0][0].split(";")[:3] == ["spinner", "__libc_start_call_main [libc.so.6]", "main [spinner]"]
    root = ET.parse(svg).getroot()
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("eunomia_spin [spinner]") for t in titles)
    assert "wrote" in err and str(svg) in err


DEPTHS_PROGRAM = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
/* Burns a little CPU at every recursion depth: DEPTHS distinct user stacks. */
__attribute__((noinline)) double eunomia_depth(int depth, double until)
{
    volatile double x = 0;
    if (depth > 0)
        x = eunomia_depth(depth - 1, until);
    while (now() < until)
        x += 0.5;
    return x;
}
int main(void)
{
    (void)getchar();
    double x = 0;
    for (int round = 0; round < ROUNDS; round++)
        for (int depth = 0; depth < DEPTHS; depth++)
            x += eunomia_depth(depth, now() + 0.01);
    printf("%f\n", x);
    fflush(stdout);
    pause();
    return 0;
}
"""
STORAGE = 16  # stack map entries: far fewer than the distinct stacks the program makes
DEPTHS = 48


def test_a_full_stack_map_is_emptied_so_new_stacks_keep_resolving(tmp_path: Path) -> None:
    """More distinct stacks than the stack map holds: only emptying it lets them all resolve.

    Without the worker emptying the map, at most STORAGE distinct stacks could ever be
    recorded (the rest collide); with it, every depth gets its turn after a read.
    """
    binary = compile_c(tmp_path, "depths", DEPTHS_PROGRAM,
                       ["-O1", "-fno-omit-frame-pointer", f"-DDEPTHS={DEPTHS}", "-DROUNDS=10"])
    proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    agent = Agent(tmp_path / "agent", tracers=[])
    try:
        agent.wait_running()
        inst = agent.start("profile", ["-F", "499", "-p", str(proc.pid), "-U",
                                       "--stack-storage-size", str(STORAGE)])
        agent.wait_state(inst["id"], "running")
        _run_spin(proc)  # DEPTHS x 10 ms x 10 rounds = 4.8 s of CPU spread over DEPTHS stacks
        time.sleep(2.5)  # two more reads: the last samples are drained and symbolised

        def depths_seen() -> set[int] | None:
            rows = [s for s in agent.get("/samples", name="eunomia_profile_samples_total", latest=True)
                    if s["labels"]["instance"] == inst["id"]]
            seen = {s["labels"]["user_stack"].count("eunomia_depth") for s in rows}
            return seen if len(seen) > STORAGE else None

        seen = wait_for(depths_seen, 15, f"more than {STORAGE} distinct stacks")
        clears = agent.get(f"/instances/{inst['id']}")["worker"]["stack_map_clears"]
    finally:
        agent.stop()
        proc.kill()
        proc.wait()
    assert len(seen - {0}) > STORAGE  # distinct recursion depths, each its own resolved stack
    assert max(seen) <= DEPTHS + 1
    assert clears >= 1
