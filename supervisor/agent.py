"""The agent as ``eunomiactl run`` starts it: store, supervisor, exporters and APIs together."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from fastapi import FastAPI

from ipc.runtime_dir import ensure_private_dir
from supervisor.api.app import create_app
from supervisor.api.metrics import create_metrics_app
from supervisor.api.remote import BearerAuth, read_token_file
from supervisor.api.server import ApiServer, MetricsServer, TcpApiServer, bind_tcp_socket, parse_address
from supervisor.arbiter import Supervisor
from supervisor.config import AgentConfig
from supervisor.containers.service import ContainerService
from supervisor.desired import DesiredState
from supervisor.export import Exports
from supervisor.export.collector import agent_registry
from supervisor.service_status import ServiceReporter
from supervisor.store import StoreReader, StoreWriter
from supervisor.systemd_notify import Notifier
from workers.catalog import Catalog

log = logging.getLogger("eunomia.agent")


class StartError(RuntimeError):
    """The agent cannot start (e.g. a port is taken); nothing was started."""


def _bind_control_tcp(config: AgentConfig) -> tuple[str, socket.socket] | None:
    """The token and the bound socket of the control API on TCP, when configured: done first, so
    that a missing token (TokenFileError) or a busy port (OSError) stops the agent before anything started."""
    listener = config.listeners.control_tcp
    if listener is None:
        return None
    token = read_token_file(listener.token_file)
    try:
        return token, bind_tcp_socket(str(listener.address), listener.port)
    except OSError as exc:
        raise StartError(f"control API: cannot listen on {listener.address}:{listener.port}: {exc.strerror}") from None


def _bind_metrics(config: AgentConfig) -> socket.socket | None:
    """The read-only metrics listener, bound before anything starts (a bad or busy address stops the agent)."""
    if not config.metrics_listen:
        return None
    try:
        return bind_tcp_socket(*parse_address(config.metrics_listen))
    except (OSError, ValueError) as exc:
        raise StartError(f"cannot serve metrics on {config.metrics_listen}: {exc}") from None


def _remote_server(config: AgentConfig, app: FastAPI, token: str, sock: socket.socket) -> TcpApiServer:
    listener = config.listeners.control_tcp
    assert listener is not None
    remote = TcpApiServer(BearerAuth(app, token), sock, listener.tls_cert, listener.tls_key)
    if not remote.tls:
        log.warning("control API on %s:%d without TLS: the token crosses the network in clear text",
                    remote.address, remote.port)
    log.info("control API on %s://%s:%d (bearer token)", "https" if remote.tls else "http", remote.address,
             remote.port)
    return remote


def _chain(*callbacks: Callable[[], None] | None) -> Callable[[], None]:
    def call() -> None:
        for callback in callbacks:
            if callback is not None:
                callback()
    return call


async def run_agent(config: AgentConfig, on_ready: Callable[[], None] | None = None,
                    notifier: Notifier | None = None) -> None:
    notifier = notifier or Notifier.from_environ()
    control_tcp = _bind_control_tcp(config)
    metrics_sock = _bind_metrics(config)
    reporter = ServiceReporter(notifier)
    catalog = Catalog.discover(config.tracer_path)
    for folder, error in catalog.errors.items():
        log.error("tracer in %s not loaded: %s", folder, error)
    ensure_private_dir(config.runtime_dir)
    writer = reader = None
    if config.db_path is not None:
        writer = StoreWriter(config.db_path, config.retention)
        writer.start()
        reader = StoreReader(config.db_path)
    try:
        exports = Exports(writer, config.default_export_handlers)
    except ValueError as exc:
        if writer is not None:
            writer.close()
        raise StartError(f"default export handlers: {exc}") from None
    containers = ContainerService.create(config.containers) if config.containers.enabled else None
    supervisor = Supervisor(config, catalog, on_ready=_chain(reporter.ready, on_ready), exports=exports,
                            containers=containers.refs if containers is not None else None,
                            enricher=containers.enricher if containers is not None else None)
    if containers is not None:
        containers.follow(asyncio.get_running_loop(), supervisor.refresh_filters)  # the cgroup filters, at once
        containers.start()
    reporter.supervisor = supervisor
    desired = DesiredState.for_agent(supervisor, config)  # reads the state file now, restores as the loop starts
    supervisor.startup = desired.restore
    registry = agent_registry(supervisor, writer)
    servers: list[ApiServer | MetricsServer | TcpApiServer] = []
    metrics_address = None
    if metrics_sock is not None:
        metrics_server = MetricsServer(create_metrics_app(registry), metrics_sock)
        metrics_address = metrics_server.address
        servers.append(metrics_server)
        log.info("metrics on http://%s/metrics", metrics_address)
    app = create_app(supervisor, reader, writer, registry, metrics_address, containers=containers, desired=desired)
    if config.serve_api:
        servers.append(ApiServer(app, config.socket_path))
    if control_tcp is not None:
        servers.append(_remote_server(config, app, *control_tcp))
    server_tasks = [asyncio.create_task(server.serve()) for server in servers]
    log.info("agent %s: api on %s, store %s", config.runtime_dir, config.socket_path, config.db_path)
    try:
        await supervisor.run(extra_tasks=[reporter.run()])
    finally:
        reporter.stopping()
        for server in servers:
            server.shutdown()
        await asyncio.gather(*server_tasks, return_exceptions=True)
        await asyncio.to_thread(exports.close)  # the handlers deliver what they hold, within a deadline
        if containers is not None:
            containers.stop()
        if writer is not None:
            writer.close()
        notifier.close()
        log.info("agent stopped")
