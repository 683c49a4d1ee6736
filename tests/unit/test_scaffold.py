"""supervisor.scaffold: `eunomiactl new` writes a tracer folder whose spec loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.scaffold import ScaffoldError, scaffold
from workers.catalog import Catalog


@pytest.mark.parametrize("kind", ["bcc", "bpftrace"])
def test_scaffolded_tracers_load(tmp_path: Path, kind: str) -> None:
    files = scaffold("my_tracer", tmp_path, kind, hook=True)
    names = {p.name for p in files}
    program = "program.bpf.c" if kind == "bcc" else "program.bt"
    assert names == {"tracer.yaml", program, "test_my_tracer.py", "hook.py"}
    catalog = Catalog.discover([tmp_path])
    assert catalog.errors == {}
    spec = catalog.get("my_tracer").spec
    assert spec.kind == kind and spec.hook == "hook.py"
    assert [m.name for m in spec.metrics] == ["my_tracer_execs_total"]
    compile(Path(tmp_path / "my_tracer" / "test_my_tracer.py").read_text(), "test", "exec")


@pytest.mark.parametrize(("name", "kind", "expected"), [
    ("My-Tracer", "bcc", "is not a tracer name"),
    ("ok", "dtrace", "kind 'dtrace' is not one of"),
])
def test_bad_names_and_kinds(tmp_path: Path, name: str, kind: str, expected: str) -> None:
    with pytest.raises(ScaffoldError, match=expected):
        scaffold(name, tmp_path, kind)


def test_an_existing_folder_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with pytest.raises(ScaffoldError, match="already exists"):
        scaffold("taken", tmp_path)
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"
