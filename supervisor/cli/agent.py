"""``eunomiactl run``: the supervisor in the foreground."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer

from supervisor.config import DEFAULT_DB, DEFAULT_RUNTIME_DIR, DEFAULT_TRACERS, AgentConfig, InstanceRequest
from workers.catalog import default_search_path


def run(
    runtime_dir: Path = typer.Option(DEFAULT_RUNTIME_DIR, help="private dir: IPC endpoints, API socket"),
    db: Path = typer.Option(DEFAULT_DB, help="SQLite store"),
    socket: Path = typer.Option(None, help="API socket [default: <runtime-dir>/eunomia.sock]"),
    tracer: list[str] = typer.Option(None, "--tracer", "-t",
                                     help="start this tracer (repeatable); replaces the default set"),
    no_default_tracers: bool = typer.Option(False, help="start no tracer; use `eunomiactl start` later"),
    tracer_path: list[Path] = typer.Option(None, help="extra folder with tracers (repeatable)"),
    heartbeat_timeout: float = typer.Option(5.0, help="seconds of worker silence before it is killed"),
    metrics_interval: float = typer.Option(10.0, help="seconds between reads of the kernel's counters"),
    metrics_listen: str = typer.Option(None, metavar="HOST:PORT",
                                       help="also serve GET /metrics (read-only, nothing else) on this TCP "
                                            "address, e.g. 127.0.0.1:9469; off by default"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the agent in the foreground (what the systemd service runs)."""
    from supervisor.agent import run_agent
    from supervisor.api.server import parse_address

    if metrics_listen:
        try:
            parse_address(metrics_listen)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--metrics-listen") from None

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    defaults: tuple[InstanceRequest, ...] = DEFAULT_TRACERS
    if tracer:
        defaults = tuple(InstanceRequest(name) for name in tracer)
    if no_default_tracers:
        defaults = ()
    config = AgentConfig(
        runtime_dir=runtime_dir, db_path=db, api_socket=socket, default_tracers=defaults,
        tracer_path=[*default_search_path(), *(tracer_path or [])],
        heartbeat_timeout=heartbeat_timeout, metrics_interval=metrics_interval, metrics_listen=metrics_listen,
    )
    asyncio.run(run_agent(config))
