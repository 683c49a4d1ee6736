"""``eunomiactl run``: the supervisor in the foreground."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer

from supervisor.config import (
    DEFAULT_DB,
    DEFAULT_RUNTIME_DIR,
    DEFAULT_TRACERS,
    AgentConfig,
    ContainerSettings,
    InstanceRequest,
)
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
    docker_socket: str = typer.Option(None, help="Docker Engine API: a socket path or URL, for container names "
                                      "and images [default: $DOCKER_HOST, then /var/run/docker.sock]"),
    container_grace: float = typer.Option(60.0, help="seconds a removed container still names late events"),
    no_containers: bool = typer.Option(False, help="no container columns on events (docs/containers.md)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the agent in the foreground (what the systemd service runs)."""
    from supervisor.agent import run_agent

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
        heartbeat_timeout=heartbeat_timeout, metrics_interval=metrics_interval,
        containers=ContainerSettings(enabled=not no_containers, docker_host=docker_socket, grace=container_grace),
    )
    asyncio.run(run_agent(config))
