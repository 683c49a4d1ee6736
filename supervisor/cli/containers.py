"""``eunomiactl containers``: the containers a running agent knows, with their ids, names, images and pods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from supervisor.cli.client import Client, SocketOption


def _pod(c: dict[str, Any]) -> str:
    if c.get("k8s_pod_name"):
        return f"{c.get('k8s_namespace') or '?'}/{c['k8s_pod_name']}"
    return c.get("k8s_pod_uid") or "-"


def _row(c: dict[str, Any]) -> str:
    state = c["state"] if c.get("removed_seconds_ago") is None else f"removed {c['removed_seconds_ago']:.0f}s ago"
    return (f"{c['id'][:12]:<12}  {(c.get('name') or '-')[:28]:<28}  {(c.get('image') or '-')[:30]:<30}  "
            f"{c['runtime']:<10}  {state:<16}  {_pod(c)}")


def containers(
    ref: str = typer.Argument(None, help="one container: full id, unique id prefix, or name"),
    as_json: bool = typer.Option(False, "--json", help="the API's JSON (with the cache's counters for the list)"),
    socket: Path = SocketOption,
) -> None:
    """List the containers the agent knows (events of host processes say container_runtime=host)."""
    client = Client(socket)
    if ref is not None:
        found = client.request("GET", f"/containers/{ref}")
        typer.echo(json.dumps(found, indent=2) if as_json else "\n".join(f"{k}: {v}" for k, v in found.items()))
        return
    data = client.request("GET", "/containers")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"{'CONTAINER':<12}  {'NAME':<28}  {'IMAGE':<30}  {'RUNTIME':<10}  {'STATE':<16}  POD")
    for c in data["containers"]:
        typer.echo(_row(c))
    cache = data["cache"]
    sources = ", ".join(f"{k}: {v}" for k, v in cache.get("sources", {}).items()) or "none"
    typer.echo(f"({len(data['containers'])} containers; sources: {sources})", err=True)
