"""``eunomiactl doctor``: kernel, BTF, tracefs, headers, bcc, and which tracers can run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from supervisor.doctor import run_checks
from workers.catalog import Catalog, default_search_path

_COLOURS = {"ok": typer.colors.GREEN, "warn": typer.colors.YELLOW, "fail": typer.colors.RED}


def doctor(
    as_json: bool = typer.Option(False, "--json"),
    tracer_path: list[Path] = typer.Option(None, help="extra folder with tracers (repeatable)"),
) -> None:
    """Check this host and say what will not work, and why."""
    report = run_checks(Catalog.discover([*default_search_path(), *(tracer_path or [])]))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        for check in report["checks"]:
            typer.secho(f"{check['status'].upper():<5}", fg=_COLOURS[check["status"]], nl=False)
            typer.echo(f" {check['name']:<15} {check['detail']}")
        typer.echo("\nTracers:")
        for tracer in report["tracers"]:
            mark = "ok  " if tracer["can_run"] else "FAIL"
            typer.echo(f"  {mark} {tracer['name']:<14} {tracer['reason']}")
    if any(c["status"] == "fail" for c in report["checks"]):
        raise typer.Exit(1)
