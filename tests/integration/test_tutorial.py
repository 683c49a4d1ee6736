"""docs/tutorial-first-tracer.md, run literally: its steps in a fresh directory, its output checked.

Blocks are marked in the page itself: ```sh tutorial (run with bash, in order, in one directory),
```LANG tutorial-file PATH (written to PATH first), ```text tutorial-expect (every line must appear
in the output of the shell step before it). So the tutorial cannot rot without this test failing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.integration.agentctl import REPO

TUTORIAL = REPO / "docs" / "tutorial-first-tracer.md"
_BLOCK = re.compile(r"^```(\w+) (tutorial(?:-file|-expect)?)(?: (\S+))?\n(.*?)^```$", re.M | re.S)


@dataclass
class Step:
    kind: str  # tutorial (shell), tutorial-file, tutorial-expect
    text: str
    path: str | None = None


def steps(markdown: str) -> list[Step]:
    return [Step(m.group(2), m.group(4), m.group(3)) for m in _BLOCK.finditer(markdown)]


def test_the_tutorial_has_runnable_steps_and_checks() -> None:
    found = steps(TUTORIAL.read_text())
    kinds = [s.kind for s in found]
    assert kinds.count("tutorial") >= 5 and kinds.count("tutorial-file") >= 3 and kinds.count("tutorial-expect") >= 5
    assert all(s.path for s in found if s.kind == "tutorial-file")


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    env.pop("EUNOMIA_SOCKET", None)
    output = ""
    try:
        for number, step in enumerate(steps(TUTORIAL.read_text()), 1):
            if step.kind == "tutorial-file":
                assert step.path is not None
                (tmp_path / step.path).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / step.path).write_text(step.text)
            elif step.kind == "tutorial":
                run = subprocess.run(["bash", "-euo", "pipefail", "-c", step.text], cwd=tmp_path, env=env,
                                     capture_output=True, text=True, timeout=240)
                output = run.stdout
                assert run.returncode == 0, f"step {number} failed ({run.returncode}):\n{step.text}\n" \
                                            f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
            else:
                for line in filter(None, (ln.strip() for ln in step.text.splitlines())):
                    assert re.search(re.escape(line).replace(r"\ ", r"\s+"), output), \
                        f"step {number}: {line!r} not in the output:\n{output[-3000:]}"
    finally:
        pid_file = tmp_path / "agent.pid"
        if pid_file.is_file():  # the tutorial's agent, if a step failed before stopping it
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
