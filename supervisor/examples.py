"""Capture each tracer's example output for its doc page, from a real run.

``python -m supervisor.docgen --capture [NAME ...]`` runs ``eunomiactl trace NAME ARGS``
(as root, on a real kernel), runs the spec's ``example.workload`` once the tracer is
attached, and writes what the tracer printed to ``bpf/NAME/example.txt``. The doc page
generator then shows that file, so every example on a page is real output.

An argument may say ``{pid}``: then the workload starts first, the tracer is given its
pid, and the workload is released (a line on its stdin: it begins with ``read _``) once
the tracer is attached — for tracers that need a process (memleak -p).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from workers.catalog import Tracer

EXAMPLE_FILE = "example.txt"
ATTACHED = "Hit Ctrl-C to end"


def command_line(tracer: Tracer) -> list[str]:
    example = tracer.spec.example
    assert example is not None
    return ["eunomiactl", "trace", tracer.name, *(a.replace("{pid}", "PID") for a in example.args)]


def capture(tracer: Tracer, eunomiactl: list[str] | None = None) -> str:
    """Run the example; the text for ``example.txt`` (command line, then the output)."""
    example = tracer.spec.example
    if example is None:
        raise ValueError(f"tracer {tracer.name} has no example in its spec")
    base = eunomiactl or [sys.executable, "-m", "supervisor.cli.main"]
    workload = subprocess.Popen(["sh", "-c", example.workload], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True) if _needs_pid(example.args) else None
    args = [a.replace("{pid}", str(workload.pid)) for a in example.args] if workload else example.args
    trace = subprocess.Popen([*base, "trace", tracer.name, *args, "--duration", str(example.duration)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert trace.stderr is not None
    try:
        first = trace.stderr.readline()
        if ATTACHED not in first:
            trace.kill()
            _, err = trace.communicate()
            raise RuntimeError(f"{tracer.name}: the tracer did not start: {first}{err}")
        if workload is not None:
            assert workload.stdin is not None
            workload.stdin.write("go\n")
            workload.stdin.close()
        else:
            subprocess.run(["sh", "-c", example.workload], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=example.duration * 4, check=False)
        out, err = trace.communicate(timeout=example.duration + 60)
    finally:
        if workload is not None:
            workload.kill()
            workload.wait()
    if trace.returncode != 0:
        raise RuntimeError(f"{tracer.name}: trace exited with {trace.returncode}: {err}")
    lines = out.rstrip().splitlines()
    if not lines:
        raise RuntimeError(f"{tracer.name}: the example printed nothing (workload: {example.workload})")
    kept = lines[:example.lines] + ([f"[… {len(lines) - example.lines} more lines]"]
                                    if len(lines) > example.lines else [])
    return "$ " + shlex.join(command_line(tracer)) + "\n" + "\n".join(line.rstrip() for line in kept) + "\n"


def _needs_pid(args: list[str]) -> bool:
    return any("{pid}" in a for a in args)


def write(tracer: Tracer) -> Path:
    path = Path(tracer.folder) / EXAMPLE_FILE
    path.write_text(capture(tracer))
    return path


def read(tracer: Tracer) -> str | None:
    path = Path(tracer.folder) / EXAMPLE_FILE
    return path.read_text() if path.is_file() else None
