"""The agent's settings, with the defaults an operator gets from ``eunomiactl run``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.backoff import BackoffPolicy
from supervisor.config_schema import ExportHandlerRequest, Listeners
from supervisor.isolation.limits import IsolationConfig
from supervisor.store.writer import Retention
from supervisor.tracer_policy import CustomTracerPolicy
from workers.catalog import default_search_path

DEFAULT_RUNTIME_DIR = Path("/run/eunomia")
DEFAULT_DB = Path("/var/lib/eunomia/eunomia.db")
SOCKET_NAME = "eunomia.sock"
SOCKET_ENV = "EUNOMIA_SOCKET"


@dataclass(frozen=True, slots=True)
class InstanceRequest:
    tracer: str
    args: dict[str, Any] | list[str] = field(default_factory=dict)
    instance_id: str | None = None  # default: <tracer>-<n>
    export_handlers: tuple[ExportHandlerRequest, ...] = ()


DEFAULT_TRACERS = (InstanceRequest("process"), InstanceRequest("opensnoop"), InstanceRequest("tcpconnect"))


@dataclass(slots=True)
class ContainerSettings:
    """Container awareness (docs/containers.md)."""

    enabled: bool = True
    docker_host: str | None = None  # a socket path or unix:// URL; default: $DOCKER_HOST, then the standard socket
    grace: float = 60.0  # seconds a removed container stays resolvable for late events
    max_containers: int = 4096


@dataclass(slots=True)
class AgentConfig:
    runtime_dir: Path = DEFAULT_RUNTIME_DIR
    db_path: Path | None = DEFAULT_DB  # None: no store (``eunomiactl trace``)
    api_socket: Path | None = None  # default: <runtime_dir>/eunomia.sock
    serve_api: bool = True
    tracer_path: list[Path] = field(default_factory=default_search_path)
    default_tracers: tuple[InstanceRequest, ...] = DEFAULT_TRACERS
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0  # a running worker silent this long is killed and restarted
    worker_supervisor_timeout: float = 10.0  # a worker that hears nothing this long exits
    start_timeout: float = 60.0  # compile + attach must finish within this
    stop_timeout: float = 5.0  # then SIGKILL
    stable_after: float = 60.0  # running this long forgets the crash streak
    batch_interval: float = 0.05
    batch_max: int = 4096
    metrics_interval: float = 10.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    retention: Retention = field(default_factory=Retention)
    listeners: Listeners = field(default_factory=Listeners)  # TCP listeners; none unless configured
    metrics_listen: str | None = None  # "HOST:PORT": serve GET /metrics (only) on TCP; off when None
    #: handlers of instances started without ``export_handlers``; None: [{"name": "sqlite"}] when there is a store
    default_export_handlers: list[dict[str, Any]] | None = None
    config_file: Path | None = None  # where the settings came from, if from a file
    state_file: Path | None = None  # the desired state (docs/operations.md); default: desired.json next to the store
    containers: ContainerSettings = field(default_factory=ContainerSettings)
    isolation: IsolationConfig = field(default_factory=IsolationConfig)  # limits of untrusted tracers
    custom_tracers: CustomTracerPolicy = field(default_factory=CustomTracerPolicy)  # adding them over the API

    @property
    def socket_path(self) -> Path:
        return self.api_socket or self.runtime_dir / SOCKET_NAME

    @property
    def log_dir(self) -> Path:
        return self.runtime_dir / "logs"

    @property
    def state_dir(self) -> Path:
        """Where the agent keeps files of its own: next to the store, or in the runtime dir without one."""
        return self.db_path.parent if self.db_path is not None else self.runtime_dir


def client_socket(explicit: str | None = None) -> Path:
    """Where a client finds the agent: --socket, $EUNOMIA_SOCKET, the agent's config file, the default."""
    if explicit or os.environ.get(SOCKET_ENV):
        return Path(explicit or os.environ[SOCKET_ENV])
    from supervisor.config_file import configured_socket  # it imports this module

    return configured_socket() or DEFAULT_RUNTIME_DIR / SOCKET_NAME
