"""``eunomiactl tracers [show NAME | add PATH | rm NAME | digest PATH]``: the tracer catalogue, from the
specs, and tracers added to or removed from a running agent."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import httpx
import typer

from supervisor.cli.client import Client, SocketOption, fail
from workers import args as tracer_args
from workers.catalog import Catalog, default_search_path
from workers.folder_digest import folder_digest, folder_files

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


def _archive_of(folder: Path) -> bytes:
    """The folder as a gzipped tar with the folder at its top (what POST /tracers accepts)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for relative in folder_files(folder):
            tar.add(folder / relative, arcname=f"{folder.name}/{relative}", recursive=False)
    return buffer.getvalue()


def _print_failure(body: dict[str, Any]) -> None:
    inst = body.get("instance") or {}
    typer.secho(f"error: {inst.get('id', 'the instance')} did not start: {body.get('detail')}", err=True,
                fg=typer.colors.RED)
    if body.get("source"):
        typer.echo(f"  at {body['source']}", err=True)
    for line in body.get("log") or []:
        typer.echo(f"  | {line}", err=True)
    if body.get("tracer_kept"):
        typer.echo("the tracer was loaded before and stays; the failed instance was removed", err=True)
    else:
        typer.echo("the tracer was not kept; fix it and add it again", err=True)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def add(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="a tracer folder on this host, or a .tar.gz of one"),
    start_: bool = typer.Option(False, "--start", help="start an instance and wait until it runs or fails"),
    wait: float = typer.Option(60.0, help="seconds to wait for the instance with --start"),
    instance_id: str = typer.Option(None, "--id", help="the instance's id with --start"),
    upload: bool = typer.Option(False, help="send a folder as an archive instead of naming its path"),
    socket: Path = SocketOption,
) -> None:
    """Add a tracer to the running agent (`--start -- OPTIONS` also starts it with OPTIONS)."""
    client = Client(socket)
    params: dict[str, Any] = {"start": start_, "wait": wait}
    if instance_id:
        params["id"] = instance_id
    if source.is_dir() and not upload:
        request: dict[str, Any] = {"json": {"path": str(source.resolve()), "args": list(ctx.args)}}
    elif source.is_dir() or source.is_file():
        data = _archive_of(source.resolve()) if source.is_dir() else source.read_bytes()
        params["args"] = list(ctx.args)
        request = {"content": data, "headers": {"content-type": "application/gzip"}}
    else:
        fail(f"{source}: no such folder or file", 2)
    try:
        response = client.http.post("/tracers", params=params, timeout=wait + 30, **request)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the agent at {client.path}: {exc}")
    body = response.json() if response.content else {}
    if response.status_code == 422:
        _print_failure(body)
        raise typer.Exit(1)
    if response.status_code >= 400:
        fail(f"{response.status_code}: {body.get('detail', response.text)}")
    tracer = body["tracer"]
    verb = "added" if body["created"] else "already loaded"
    typer.echo(f"{verb} {tracer['name']} ({tracer['origin']}, {tracer['digest']})")
    inst = body.get("instance")
    if inst:
        typer.echo(f"{inst['id']}: {inst['state']}")


@app.command()
def rm(
    name: str = typer.Argument(..., help="the tracer's name"),
    force: bool = typer.Option(False, "--force", help="stop and remove its instances too"),
    socket: Path = SocketOption,
) -> None:
    """Remove a tracer that was added (never a built-in one) from the running agent."""
    Client(socket).request("DELETE", f"/tracers/{name}", params={"force": force})
    typer.echo(f"removed {name}")


@app.command()
def digest(folder: Path = typer.Argument(..., help="a tracer folder")) -> None:
    """Print a folder's digest, as allow-lists (--custom-tracer-allow sha256:…) name it."""
    if not folder.is_dir():
        fail(f"{folder}: not a folder", 2)
    typer.echo(folder_digest(folder))
