"""The agent as ``eunomiactl run`` starts it: store, supervisor and control API together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ipc.runtime_dir import ensure_private_dir
from supervisor.api.app import create_app
from supervisor.api.server import ApiServer
from supervisor.arbiter import Supervisor
from supervisor.config import AgentConfig
from supervisor.containers.service import ContainerService
from supervisor.sinks import Sink, StoreSink
from supervisor.store import StoreReader, StoreWriter
from workers.catalog import Catalog

log = logging.getLogger("eunomia.agent")


async def run_agent(config: AgentConfig, on_ready: Callable[[], None] | None = None) -> None:
    catalog = Catalog.discover(config.tracer_path)
    for folder, error in catalog.errors.items():
        log.error("tracer in %s not loaded: %s", folder, error)
    ensure_private_dir(config.runtime_dir)
    writer = reader = None
    sinks: list[Sink] = []
    if config.db_path is not None:
        writer = StoreWriter(config.db_path, config.retention)
        writer.start()
        reader = StoreReader(config.db_path)
        sinks.append(StoreSink(writer))
    containers = ContainerService.create(config.containers) if config.containers.enabled else None
    if containers is not None:
        containers.start()
    supervisor = Supervisor(config, catalog, sinks, on_ready=on_ready,
                            enricher=containers.enricher if containers is not None else None)
    app = create_app(supervisor, reader, writer, containers=containers)
    api = ApiServer(app, config.socket_path) if config.serve_api else None
    api_task = asyncio.create_task(api.serve()) if api else None
    log.info("agent %s: api on %s, store %s", config.runtime_dir, config.socket_path, config.db_path)
    try:
        await supervisor.run()
    finally:
        if api is not None and api_task is not None:
            api.shutdown()
            await api_task
        if containers is not None:
            containers.stop()
        if writer is not None:
            writer.close()
        log.info("agent stopped")
