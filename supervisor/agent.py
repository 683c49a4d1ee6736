"""The agent as ``eunomiactl run`` starts it: store, supervisor and control API together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ipc.runtime_dir import ensure_private_dir
from supervisor.api.app import create_app
from supervisor.api.metrics import create_metrics_app
from supervisor.api.server import ApiServer, MetricsServer, bind_tcp_socket
from supervisor.arbiter import Supervisor
from supervisor.config import AgentConfig
from supervisor.export import Exports
from supervisor.export.collector import agent_registry
from supervisor.store import StoreReader, StoreWriter
from workers.catalog import Catalog

log = logging.getLogger("eunomia.agent")


async def run_agent(config: AgentConfig, on_ready: Callable[[], None] | None = None) -> None:
    catalog = Catalog.discover(config.tracer_path)
    for folder, error in catalog.errors.items():
        log.error("tracer in %s not loaded: %s", folder, error)
    ensure_private_dir(config.runtime_dir)
    metrics_sock = None
    if config.metrics_listen:  # bound first: a bad or busy address stops the agent before anything starts
        try:
            metrics_sock = bind_tcp_socket(config.metrics_listen)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"eunomia: cannot serve metrics on {config.metrics_listen}: {exc}") from None
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
        raise SystemExit(f"eunomia: default export handlers: {exc}") from None
    supervisor = Supervisor(config, catalog, on_ready=on_ready, exports=exports)
    registry = agent_registry(supervisor, writer)
    servers: list[ApiServer | MetricsServer] = []
    metrics_address = None
    if metrics_sock is not None:
        metrics_server = MetricsServer(create_metrics_app(registry), metrics_sock)
        metrics_address = metrics_server.address
        servers.append(metrics_server)
        log.info("metrics on http://%s/metrics", metrics_address)
    if config.serve_api:
        servers.append(ApiServer(create_app(supervisor, reader, writer, registry, metrics_address),
                                 config.socket_path))
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    log.info("agent %s: api on %s, store %s", config.runtime_dir, config.socket_path, config.db_path)
    try:
        await supervisor.run()
    finally:
        for server in servers:
            server.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(exports.close)  # the handlers deliver what they hold, within a deadline
        if writer is not None:
            writer.close()
        log.info("agent stopped")
