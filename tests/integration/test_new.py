"""`eunomiactl new NAME` makes a tracer that passes its own generated test, for both kinds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.agentctl import EUNOMIACTL, REPO


@pytest.mark.parametrize("kind", ["bcc", "bpftrace"])
def test_a_new_tracer_passes_its_own_test(tmp_path: Path, kind: str) -> None:
    made = subprocess.run([*EUNOMIACTL, "new", "fresh", "--dir", str(tmp_path), "--kind", kind],
                          capture_output=True, text=True, cwd=REPO)
    assert made.returncode == 0, made.stderr
    assert f"eunomiactl trace fresh --tracer-path {tmp_path}" in made.stdout
    test = tmp_path / "fresh" / "test_fresh.py"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
    again = subprocess.run([*EUNOMIACTL, "new", "fresh", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
