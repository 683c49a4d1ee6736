"""``eunomiactl tracers [show NAME]``: the tracer catalogue, from the specs."""

from __future__ import annotations

from pathlib import Path

import typer

from supervisor.cli.client import fail
from workers import args as tracer_args
from workers.catalog import Catalog, default_search_path

app = typer.Typer(help="The tracers this agent can run.", invoke_without_command=True)


def _catalog(extra: list[Path] | None) -> Catalog:
    return Catalog.discover([*default_search_path(), *(extra or [])])


@app.callback()
def list_tracers(ctx: typer.Context, tracer_path: list[Path] = typer.Option(None)) -> None:
    """List tracers (and folders that failed to load)."""
    if ctx.invoked_subcommand:
        return
    catalog = _catalog(tracer_path)
    for tracer in catalog.tracers.values():
        first = tracer.spec.description.split(". ")[0].rstrip(".")
        typer.echo(f"{tracer.name:<14} {first}")
    for folder, error in catalog.errors.items():
        typer.secho(f"(not loaded) {folder}: {error}", err=True, fg=typer.colors.YELLOW)


@app.command()
def show(name: str, tracer_path: list[Path] = typer.Option(None)) -> None:
    """A tracer's description, options, event fields and metrics."""
    try:
        tracer = _catalog(tracer_path).get(name)
    except KeyError as exc:
        fail(exc.args[0], 2)
    spec = tracer.spec
    typer.echo(f"{spec.name} ({tracer.folder})\n\n{spec.description}\n\nOptions:")
    for p in tracer_args.parameters(spec):
        flags = ", ".join(f for f in (p.flag, p.long_flag) if f)
        value = "" if p.type == "bool" else f" {p.type.upper()}"
        typer.echo(f"  {flags}{value:<10} {p.description} [default: {p.default!r}]")
    if spec.event:
        typer.echo("\nEvent fields (besides ts, pid, tid, uid, gid, comm, cgroup_id):")
        for f in spec.event.fields:
            typer.echo(f"  {f.name:<16} {f.description}")
    if spec.metrics:
        typer.echo("\nMetrics:")
        for m in spec.metrics:
            typer.echo(f"  eunomia_{m.name:<30} {m.type:<9} {m.help}")
