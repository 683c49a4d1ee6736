"""``eunomiactl start|stop|restart|rm|list``: manage tracer instances of a running agent."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from supervisor.cli.client import Client, SocketOption


def _row(inst: dict) -> str:
    drops = inst["drops"]
    dropped = sum(drops.values())
    error = (inst.get("last_error") or "").splitlines()[0][:60] if inst.get("last_error") else ""
    return (f"{inst['id']:<20} {inst['tracer']:<12} {inst['state']:<9} {str(inst['pid'] or '-'):>7} "
            f"{inst['restarts']:>8} {inst['events']:>10} {dropped:>7}  {error}")


def list_(
    as_json: bool = typer.Option(False, "--json", help="a JSON list of objects"),
    socket: Path = SocketOption,
) -> None:
    """List tracer instances with their state, pid, restarts, events and drops."""
    instances = Client(socket).request("GET", "/instances")
    if as_json:
        typer.echo(json.dumps(instances, indent=2))
        return
    typer.echo(f"{'ID':<20} {'TRACER':<12} {'STATE':<9} {'PID':>7} {'RESTARTS':>8} {'EVENTS':>10} {'DROPS':>7}  ERROR")
    for inst in instances:
        typer.echo(_row(inst))


def start(
    ctx: typer.Context,
    tracer: str = typer.Argument(..., help="tracer name (see `eunomiactl tracers`)"),
    instance_id: str = typer.Option(None, "--id", help="instance id [default: <tracer>-<n>]"),
    socket: Path = SocketOption,
) -> None:
    """Start a tracer instance; tracer options follow the name, e.g. `start opensnoop -x -p 42`."""
    inst = Client(socket).request("POST", "/instances", json={"tracer": tracer, "args": list(ctx.args),
                                                               "id": instance_id})
    typer.echo(f"started {inst['id']} ({inst['state']})")


def stop(instance_id: str = typer.Argument(...), socket: Path = SocketOption) -> None:
    """Stop an instance (it stays listed as stopped; `restart` brings it back)."""
    inst = Client(socket).request("POST", f"/instances/{instance_id}/stop")
    typer.echo(f"{inst['id']}: {inst['state']}")


def restart(instance_id: str = typer.Argument(...), socket: Path = SocketOption) -> None:
    """Start a stopped or fatal instance again, with a fresh crash history."""
    inst = Client(socket).request("POST", f"/instances/{instance_id}/restart")
    typer.echo(f"{inst['id']}: {inst['state']}")


def rm(instance_id: str = typer.Argument(...), socket: Path = SocketOption) -> None:
    """Stop an instance and forget it."""
    Client(socket).request("DELETE", f"/instances/{instance_id}")
    typer.echo(f"removed {instance_id}")
