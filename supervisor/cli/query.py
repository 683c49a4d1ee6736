"""``eunomiactl query events|samples``: read the agent's store."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import typer

from supervisor.cli.client import Client, SocketOption, fail

app = typer.Typer(help="Query events and metric samples in the agent's store.", no_args_is_help=True)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None) -> int | None:
    """'90s', '5m', '2h', '1d' ago → ns since the epoch."""
    if text is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not m:
        fail(f"--since {text!r}: use a duration such as 30s, 5m, 2h or 1d", 2)
    return time.time_ns() - int(float(m.group(1)) * _UNITS[m.group(2)] * 1e9)


@app.command()
def events(
    tracer: str = typer.Option(None, help="only this tracer"),
    instance: str = typer.Option(None, help="only this instance"),
    pid: int = typer.Option(None, help="only this process"),
    comm: str = typer.Option(None, help="only this comm"),
    since: str = typer.Option(None, help="only this recent, e.g. 5m"),
    limit: int = typer.Option(20, help="at most this many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
    socket: Path = SocketOption,
) -> None:
    """Stored events, newest first."""
    params = {k: v for k, v in {"tracer": tracer, "instance": instance, "pid": pid, "comm": comm,
                                "since": parse_since(since), "limit": limit}.items() if v is not None}
    for event in Client(socket).request("GET", "/events", params=params):
        if as_json:
            typer.echo(json.dumps(event))
        else:
            rest = " ".join(f"{k}={v}" for k, v in event.items()
                            if k not in ("ts", "tracer", "instance", "pid", "comm", "uid", "cgroup_id", "tid", "gid"))
            when = time.strftime("%H:%M:%S", time.localtime(event["ts"] / 1e9))
            typer.echo(f"{when} {event['tracer']:<11} {event['pid']:>7} {event['comm']:<16} {rest}")


@app.command()
def samples(
    name: str = typer.Option(None, help="only this metric (e.g. eunomia_tcp_connects_total)"),
    instance: str = typer.Option(None, help="only this instance's series"),
    latest: bool = typer.Option(True, help="only the newest value of each series"),
    since: str = typer.Option(None, help="only this recent, e.g. 5m"),
    limit: int = typer.Option(200),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
    socket: Path = SocketOption,
) -> None:
    """Stored metric samples (by default the newest value of each series)."""
    params = {k: v for k, v in {"name": name, "instance": instance, "latest": latest, "since": parse_since(since),
                                "limit": limit}.items() if v is not None}
    for sample in Client(socket).request("GET", "/samples", params=params):
        if as_json:
            typer.echo(json.dumps(sample))
        else:
            labels = ",".join(f'{k}="{v}"' for k, v in sample["labels"].items())
            typer.echo(f"{sample['name']}{{{labels}}} {sample['value']:g}")
