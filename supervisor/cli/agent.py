"""``eunomiactl run``: the supervisor in the foreground."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from supervisor.config import AgentConfig
from supervisor.config_file import CONFIG_ENV, DEFAULT_CONFIG, EX_CONFIG, ConfigError, Overrides, choose_file, resolve
from supervisor.isolation.limits import UNLIMITED, IsolationConfig, parse_limits
from supervisor.tracer_policy import CustomTracerPolicy


def run(
    config: Path = typer.Option(None, "--config", "-c", envvar=CONFIG_ENV,
                                help=f"YAML config file [default: {DEFAULT_CONFIG} if it exists]; "
                                     "the options below override it"),
    no_config: bool = typer.Option(False, "--no-config",
                                   help=f"ignore {DEFAULT_CONFIG} and ${CONFIG_ENV}: built-in defaults"),
    check: bool = typer.Option(False, "--check", help="validate the config (and the tracers it names), then exit"),
    runtime_dir: Path = typer.Option(None, help="private dir: IPC endpoints, API socket [default: /run/eunomia]"),
    db: Path = typer.Option(None, help="SQLite store [default: /var/lib/eunomia/eunomia.db]"),
    socket: Path = typer.Option(None, help="API socket [default: <runtime-dir>/eunomia.sock]"),
    tracer: list[str] = typer.Option(None, "--tracer", "-t",
                                     help="start this tracer (repeatable); replaces the default set"),
    no_default_tracers: bool = typer.Option(False, "--no-default-tracers",
                                            help="start no tracer; use `eunomiactl start` later"),
    tracer_path: list[Path] = typer.Option(None, help="extra folder with tracers (repeatable)"),
    heartbeat_timeout: float = typer.Option(None, min=0.1,
                                            help="seconds of worker silence before it is killed [default: 5]"),
    metrics_interval: float = typer.Option(None, min=0.1,
                                           help="seconds between reads of the kernel's counters [default: 10]"),
    metrics_listen: str = typer.Option(None, metavar="HOST:PORT",
                                       help="also serve GET /metrics (read-only, nothing else) on this TCP "
                                            "address, e.g. 127.0.0.1:9469; off by default (config: "
                                            "listeners.metrics)"),
    docker_socket: str = typer.Option(None, help="Docker Engine API: a socket path or URL, for container names "
                                      "and images [default: $DOCKER_HOST, then /var/run/docker.sock]"),
    container_grace: float = typer.Option(None, min=0.0,
                                          help="seconds a removed container still names late events [default: 60]"),
    no_containers: bool = typer.Option(False, help="no container columns on events (docs/containers.md)"),
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
    """Run the agent in the foreground (what the systemd service runs).

    Exit status: 0 after SIGTERM/SIGINT; 78 (EX_CONFIG) for a config it refuses, and then nothing was started;
    1 for other failures.
    """
    from supervisor.api.server import parse_address

    if metrics_listen:
        try:
            parse_address(metrics_listen)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--metrics-listen") from None
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = Overrides(runtime_dir=runtime_dir, db=db, socket=socket, tracers=list(tracer or []),
                          no_default_tracers=no_default_tracers, tracer_path=list(tracer_path or []),
                          heartbeat_timeout=heartbeat_timeout, metrics_interval=metrics_interval,
                          metrics_listen=metrics_listen, docker_socket=docker_socket,
                          container_grace=container_grace, no_containers=no_containers)
    path = choose_file(config, no_config)
    try:
        agent_config = resolve(path, overrides)
    except ConfigError as exc:
        for line in exc.lines():
            typer.echo(f"eunomia: config error: {line}", err=True)
        typer.echo(f"eunomia: not started (exit status {EX_CONFIG}); see docs/operations.md", err=True)
        raise typer.Exit(EX_CONFIG) from None
    for name, value in custom_tracer_settings(agent_config, allow_custom_tracers, custom_tracer_allow, custom_limit,
                                              builtin_limit).items():
        setattr(agent_config, name, value)
    if check:
        names = ", ".join(r.instance_id or r.tracer for r in agent_config.default_tracers) or "none"
        typer.echo(f"{path or 'built-in defaults'}: OK (tracers: {names})")
        return
    from supervisor.agent import StartError, run_agent

    try:
        asyncio.run(run_agent(agent_config))
    except StartError as exc:
        typer.echo(f"eunomia: {exc}", err=True)
        raise typer.Exit(1) from None


def custom_tracer_settings(config: AgentConfig, enabled: bool, allow: list[str] | None, limits: list[str] | None,
                           builtin: list[str] | None) -> dict[str, Any]:
    """AgentConfig's isolation and custom_tracers: the config file's, with the options over them
    (typer.BadParameter names the bad one)."""
    policy = config.custom_tracers
    try:
        if allow:
            policy = CustomTracerPolicy.from_allow_list(enabled or policy.api_enabled, allow)
        elif enabled:
            policy = replace(policy, api_enabled=True)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--custom-tracer-allow") from None
    try:
        custom = parse_limits(limits, config.isolation.custom) if limits else config.isolation.custom
        custom.ids()  # the user to drop to exists on this host
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--custom-limit") from None
    except KeyError:
        raise typer.BadParameter(f"user {custom.user!r} (the default) does not exist on this host; choose one with "
                                 "user=NAME", param_hint="--custom-limit") from None
    try:
        trusted = (parse_limits(builtin, config.isolation.builtin or UNLIMITED) if builtin
                   else config.isolation.builtin)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--builtin-limit") from None
    return {"custom_tracers": policy, "isolation": IsolationConfig(custom=custom, builtin=trusted)}
