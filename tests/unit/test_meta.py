"""Every built-in tracer is documented and tested, and the generated docs are current."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from supervisor import docgen, examples
from workers.catalog import BUILTIN_DIR, REPO_ROOT, Catalog

BUILTINS = sorted(Catalog.discover([BUILTIN_DIR]).tracers)


def test_builtin_tracers_all_load() -> None:
    assert Catalog.discover([BUILTIN_DIR]).errors == {}
    assert {"process", "opensnoop", "tcpconnect"} <= set(BUILTINS)


def test_docs_are_generated_from_the_current_specs() -> None:
    for path, text in docgen.pages().items():
        assert path.is_file() and path.read_text() == text, f"{path} is stale: run `python -m supervisor.docgen`"
    generated = {p.name for p in docgen.TRACERS_DIR.glob("*.md")}
    assert generated == {p.name for p in docgen.pages() if p.parent == docgen.TRACERS_DIR}, "stray tracer pages"


@pytest.mark.parametrize("name", BUILTINS)
def test_every_tracer_has_a_ground_truth_test(name: str) -> None:
    test_file = REPO_ROOT / "tests" / "integration" / f"test_tracer_{name}.py"
    assert test_file.is_file(), f"{name} has no {test_file.relative_to(REPO_ROOT)}"
    assert "def test_" in test_file.read_text()


@pytest.mark.parametrize("name", BUILTINS)
def test_every_tracer_is_documented(name: str) -> None:
    assert f"## `{name}`" in docgen.EVENTS_DOC.read_text()
    assert (docgen.TRACERS_DIR / f"{name}.md").is_file()
    spec = Catalog.discover([BUILTIN_DIR]).get(name).spec
    assert spec.description.strip()
    if spec.event:
        assert all(f.description.strip() for f in spec.event.fields), f"{name}: undocumented event fields"


@pytest.mark.parametrize("name", BUILTINS)
def test_every_tracer_page_shows_real_example_output(name: str) -> None:
    tracer = Catalog.discover([BUILTIN_DIR]).get(name)
    assert tracer.spec.example is not None, f"{name}: tracer.yaml has no example"
    captured = examples.read(tracer)
    assert captured, f"{name}: no example.txt: run `python -m supervisor.docgen --capture {name}` (root)"
    assert captured.startswith("$ " + shlex.join(examples.command_line(tracer)) + "\n"), \
        f"{name}: example.txt is from other arguments: capture it again"
    assert len(captured.splitlines()) > 1, f"{name}: the example printed nothing"
    assert captured.rstrip() in (docgen.TRACERS_DIR / f"{name}.md").read_text()


def test_docs_referenced_by_the_readme_exist() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for doc in ("docs/architecture.md", "docs/events.md", "docs/tracer-format.md", "docs/protocol.md",
                "docs/api.md", "docs/cli.md", "docs/tutorial-first-tracer.md", "docs/troubleshooting.md"):
        assert doc in readme and Path(REPO_ROOT / doc).is_file(), doc


def test_every_builtin_folder_is_a_tracer_with_a_spec_and_its_program() -> None:
    folders = sorted(p.name for p in BUILTIN_DIR.iterdir() if p.is_dir() and p.name != "include")
    assert folders == BUILTINS, "every folder in bpf/ (but include/) is a tracer whose tracer.yaml loads"
    catalog = Catalog.discover([BUILTIN_DIR])
    for name in BUILTINS:
        tracer = catalog.get(name)
        assert (tracer.folder / tracer.spec.program).is_file()


def test_both_tracer_kinds_are_built_in_and_covered() -> None:
    """The meta-tests above run for every built-in of either kind; make sure both kinds are there."""
    kinds = {tracer.spec.kind for tracer in Catalog.discover([BUILTIN_DIR]).tracers.values()}
    assert kinds == {"bcc", "bpftrace"}


def test_api_and_cli_references_cover_every_route_and_command() -> None:
    import typer

    from supervisor import refdocs
    from supervisor.cli.main import app

    api = refdocs.API_DOC.read_text()
    for path, methods in refdocs.openapi()["paths"].items():
        for method in methods:
            assert f"## `{method.upper()} {path}`" in api
    cli = refdocs.CLI_DOC.read_text()
    for name in typer.main.get_command(app).commands:
        assert f"## `eunomiactl {name}`" in cli
