"""``eunomiactl run``: the supervisor in the foreground."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import typer

from supervisor.config import DEFAULT_DB, DEFAULT_RUNTIME_DIR, DEFAULT_TRACERS, AgentConfig, InstanceRequest
from supervisor.isolation.limits import UNLIMITED, IsolationConfig, parse_limits
from supervisor.tracer_policy import CustomTracerPolicy
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
    allow_custom_tracers: bool = typer.Option(False, help="allow adding and removing tracers over the API"),
    custom_tracer_allow: list[str] = typer.Option(None, metavar="DIR|sha256:HEX",
                                                  help="accept only tracers under this directory or with this "
                                                       "digest (repeatable)"),
    custom_limit: list[str] = typer.Option(None, metavar="KEY=VALUE",
                                           help="limit of untrusted tracers' workers, e.g. memory=128M, cpu=0.25, "
                                                "event-rate=5000, bpf-budget=50 (see docs/custom-tracers.md)"),
    builtin_limit: list[str] = typer.Option(None, metavar="KEY=VALUE",
                                            help="limit the built-in tracers' workers too (none by default)"),
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
        **custom_tracer_settings(allow_custom_tracers, custom_tracer_allow, custom_limit, builtin_limit),
    )
    asyncio.run(run_agent(config))


def custom_tracer_settings(enabled: bool, allow: list[str] | None, limits: list[str] | None,
                           builtin: list[str] | None) -> dict[str, Any]:
    """AgentConfig's isolation and custom_tracers from the options (typer.BadParameter names the bad one)."""
    try:
        policy = CustomTracerPolicy.from_allow_list(enabled, allow)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--custom-tracer-allow") from None
    try:
        custom = parse_limits(limits or [])
        custom.ids()  # the user to drop to exists on this host
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--custom-limit") from None
    except KeyError:
        raise typer.BadParameter(f"user {custom.user!r} (the default) does not exist on this host; choose one with "
                                 "user=NAME", param_hint="--custom-limit") from None
    try:
        trusted = parse_limits(builtin, UNLIMITED) if builtin else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--builtin-limit") from None
    return {"custom_tracers": policy, "isolation": IsolationConfig(custom=custom, builtin=trusted)}
