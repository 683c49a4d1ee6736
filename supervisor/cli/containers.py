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


def _cells(c: dict[str, Any]) -> list[str]:
    state = c["state"] if c.get("removed_seconds_ago") is None else f"removed {c['removed_seconds_ago']:.0f}s ago"
    return [c["id"][:12], c.get("name") or "-", c.get("image") or "-", c["runtime"], state, _pod(c)]


def table(containers: list[dict[str, Any]]) -> list[str]:
    """Aligned columns as wide as their widest cell (up to 48 characters)."""
    rows = [["CONTAINER", "NAME", "IMAGE", "RUNTIME", "STATE", "POD"], *(_cells(c) for c in containers)]
    widths = [min(48, max(len(r[i]) for r in rows)) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell[:w].ljust(w) for cell, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in rows]


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
    for line in table(data["containers"]):
        typer.echo(line)
    cache = data["cache"]
    sources = ", ".join(f"{k}: {v}" for k, v in cache.get("sources", {}).items()) or "none"
    typer.echo(f"({len(data['containers'])} containers; sources: {sources})", err=True)
