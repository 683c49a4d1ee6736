"""``eunomiactl new NAME``: scaffold a working tracer folder (spec, program, test)."""

from __future__ import annotations

from pathlib import Path

import typer

from supervisor.cli.client import fail
from supervisor.scaffold import KINDS, ScaffoldError, scaffold


def new(
    name: str = typer.Argument(..., help="the tracer's name: lower-case letters, digits and _"),
    directory: Path = typer.Option(Path("."), "--dir", help="where to create the folder NAME"),
    kind: str = typer.Option("bcc", "--kind", help=f"program kind: {' or '.join(KINDS)}"),
    hook: bool = typer.Option(False, "--hook", help="also write a hook.py stub (Python run on every event)"),
) -> None:
    """Create a tracer folder that works as it is, with a test; then edit it."""
    try:
        files = scaffold(name, directory, kind, hook)
    except ScaffoldError as exc:
        fail(str(exc), 2)
    except OSError as exc:
        fail(f"cannot write the tracer: {exc}", 1)
    folder = files[0].parent
    for path in files:
        typer.echo(f"created {path}")
    typer.echo(f"\nRun it:   eunomiactl trace {name} --tracer-path {folder.parent}\n"
               f"Test it:  python -m pytest {folder / f'test_{name}.py'}")
