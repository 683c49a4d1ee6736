"""The structure of the agent's YAML config file (``/etc/eunomia/eunomia.yaml``), validated by pydantic.

Only the shape and the values are checked here; what needs the file system (the token
file, TLS files) or the tracer catalog is checked in :mod:`supervisor.config_file`.
Every model forbids unknown keys, so that a typo is an error instead of a silent default.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from supervisor.backoff import BackoffPolicy

#: sun_path is 108 bytes with the terminating NUL
UNIX_PATH_MAX = 107
#: the longest name the agent puts in its runtime directory (``events.sock``, ``control.sock``, ...)
RUNTIME_DIR_ENTRY = "control.sock"
INSTANCE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
TRACER_NAME = r"^[a-z][a-z0-9_]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or a text such as ``500ms``, ``30s``, ``10m``, ``12h``, ``7d``."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (a number of seconds, or e.g. '30s', '10m', '12h', '7d')")
        return float(match.group(1)) * _UNITS[match.group(2)]
    if isinstance(value, bool):
        raise ValueError("expected a duration, not true/false")
    return value


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError(f"{str(path)!r} must be an absolute path")
    if "\0" in str(path):
        raise ValueError("a path may not contain NUL")
    return path


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0)") from None


def _tracer_args(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"parameter names must be text, not {bad!r}")
        return value
    if isinstance(value, list):
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            raise ValueError(f"bcc-style flags must all be text (quote numbers: '42'), not {bad!r}")
        return value
    raise ValueError("expected a mapping {parameter: value} or a list of bcc-style flags such as ['-p', '42'], "
                     f"not {type(value).__name__}")


def _fits_unix_socket(path: Path) -> Path:
    if len(str(path).encode()) > UNIX_PATH_MAX:
        raise ValueError(f"longer than the {UNIX_PATH_MAX} bytes a unix socket path may have")
    return path


def _fits_runtime_sockets(path: Path) -> Path:
    if len(str(path / RUNTIME_DIR_ENTRY).encode()) > UNIX_PATH_MAX:
        raise ValueError(f"too long for the unix sockets inside it (at most "
                         f"{UNIX_PATH_MAX - len(RUNTIME_DIR_ENTRY) - 1} bytes)")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]
Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
IpAddress = Annotated[str, AfterValidator(_ip_address)]
Port = Annotated[int, Field(ge=1, le=65535)]
TracerArgs = Annotated[dict[str, Any] | list[str], BeforeValidator(_tracer_args)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExportHandlerRequest(_Model):
    """One export handler of a tracer instance (Eunomia's ``export_handlers``); acted on by the exporters."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    args: TracerArgs = Field(default_factory=dict)


class TracerEntry(_Model):
    """A tracer the agent starts by itself."""

    name: Annotated[str, Field(pattern=TRACER_NAME, max_length=64)]
    id: Annotated[str | None, Field(pattern=INSTANCE_ID)] = None
    args: TracerArgs = Field(default_factory=dict)
    export_handlers: list[ExportHandlerRequest] = Field(default_factory=list)


class Retention(_Model):
    max_events: Annotated[int, Field(ge=1)] = 1_000_000
    events_max_age: Seconds = 7 * 86400.0
    samples_max_age: Seconds = 7 * 86400.0
    prune_interval: Seconds = 10.0


class Store(_Model):
    path: AbsolutePath = Path("/var/lib/eunomia/eunomia.db")
    retention: Retention = Field(default_factory=Retention)


class Heartbeat(_Model):
    interval: Seconds = 1.0
    timeout: Seconds = 5.0  # a running worker silent this long is killed and restarted
    worker_timeout: Seconds = 10.0  # a worker that hears nothing from the supervisor this long exits

    @model_validator(mode="after")
    def _ordered(self) -> Heartbeat:
        if self.timeout <= self.interval:
            raise ValueError(f"timeout ({self.timeout:g}s) must be longer than interval ({self.interval:g}s)")
        if self.worker_timeout <= self.interval:
            raise ValueError(f"worker_timeout ({self.worker_timeout:g}s) must be longer than interval "
                             f"({self.interval:g}s)")
        return self


class Workers(_Model):
    start_timeout: Seconds = 60.0  # compile + attach must finish within this
    stop_timeout: Seconds = 5.0  # then SIGKILL
    stable_after: Seconds = 60.0  # running this long forgets the crash streak
    metrics_interval: Seconds = 10.0
    batch_interval: Seconds = 0.05
    batch_max: Annotated[int, Field(ge=1, le=1_000_000)] = 4096


class Backoff(_Model):
    initial: Seconds = 1.0
    maximum: Seconds = 60.0
    factor: Annotated[float, Field(ge=1)] = 2.0
    jitter: Annotated[float, Field(ge=0, lt=1)] = 0.2
    max_crashes: Annotated[int, Field(ge=1)] = 5
    window: Seconds = 60.0

    @model_validator(mode="after")
    def _policy(self) -> Backoff:
        self.policy()  # BackoffPolicy's own checks, with its messages
        return self

    def policy(self) -> BackoffPolicy:
        return BackoffPolicy(initial=self.initial, maximum=self.maximum, factor=self.factor, jitter=self.jitter,
                             max_crashes=self.max_crashes, window=self.window)


class MetricsListener(_Model):
    """Where the Prometheus exporter listens (served by the export handlers, not by this module)."""

    address: IpAddress = "127.0.0.1"
    port: Port = 9464


class ControlTcpListener(_Model):
    """The control API over TCP: every request needs ``Authorization: Bearer <token>``."""

    address: IpAddress = "127.0.0.1"
    port: Port = 8527
    token_file: AbsolutePath
    tls_cert: AbsolutePath | None = None
    tls_key: AbsolutePath | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ControlTcpListener:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both for TLS, or neither")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


class Listeners(_Model):
    """TCP listeners; nothing listens on TCP unless it is configured here."""

    metrics: MetricsListener | None = None
    control_tcp: ControlTcpListener | None = None

    @model_validator(mode="after")
    def _distinct(self) -> Listeners:
        m, c = self.metrics, self.control_tcp
        if m is not None and c is not None and m.port == c.port:
            wildcard = {"0.0.0.0", "::"}
            if m.address == c.address or m.address in wildcard or c.address in wildcard:
                raise ValueError(f"metrics and control_tcp both want port {m.port} on overlapping addresses "
                                 f"({m.address}, {c.address})")
        return self


def _limits(items: list[str]) -> list[str]:
    from supervisor.isolation.limits import parse_limits  # the flags' own parser: one syntax for both

    parse_limits(items)
    return items


def _allow_list(entries: list[str]) -> list[str]:
    from supervisor.tracer_policy import CustomTracerPolicy

    CustomTracerPolicy.from_allow_list(True, entries)
    return entries


class CustomTracers(_Model):
    """Adding and removing tracers over the API (docs/custom-tracers.md); the flags override it."""

    allow_api: bool = False  # --allow-custom-tracers
    allow: Annotated[list[str], AfterValidator(_allow_list)] = Field(default_factory=list)  # --custom-tracer-allow


class Isolation(_Model):
    """Limits of tracers' workers, as KEY=VALUE items (the --custom-limit / --builtin-limit syntax)."""

    custom: Annotated[list[str], AfterValidator(_limits)] = Field(default_factory=list)  # over the defaults
    builtin: Annotated[list[str], AfterValidator(_limits)] | None = None  # None: built-in tracers unlimited


class Containers(_Model):
    """Container awareness (docs/containers.md)."""

    enabled: bool = True
    docker_socket: Annotated[str, Field(min_length=1)] | None = None  # a path or unix:// URL; default: $DOCKER_HOST
    grace: Annotated[float, Field(ge=0)] = 60.0  # seconds a removed container still names late events
    max_containers: Annotated[int, Field(ge=1, le=1_000_000)] = 4096


class ConfigFile(_Model):
    """The whole file. Every section is optional; an empty file means the built-in defaults."""

    runtime_dir: Annotated[AbsolutePath, AfterValidator(_fits_runtime_sockets)] = Path("/run/eunomia")
    api_socket: Annotated[AbsolutePath, AfterValidator(_fits_unix_socket)] | None = None  # <runtime_dir>/eunomia.sock
    store: Store = Field(default_factory=Store)
    state_file: AbsolutePath | None = None  # the desired state; default: desired.json next to store.path
    tracer_path: list[AbsolutePath] = Field(default_factory=list)  # searched after the built-in tracers
    tracers: list[TracerEntry] | None = None  # None: the built-in default set; []: none
    heartbeat: Heartbeat = Field(default_factory=Heartbeat)
    workers: Workers = Field(default_factory=Workers)
    backoff: Backoff = Field(default_factory=Backoff)
    listeners: Listeners = Field(default_factory=Listeners)
    containers: Containers = Field(default_factory=Containers)
    custom_tracers: CustomTracers = Field(default_factory=CustomTracers)
    isolation: Isolation = Field(default_factory=Isolation)

    @field_validator("tracers")
    @classmethod
    def _unique_ids(cls, tracers: list[TracerEntry] | None) -> list[TracerEntry] | None:
        seen: dict[str, int] = {}
        for index, entry in enumerate(tracers or []):
            if entry.id is None:
                continue
            if entry.id in seen:
                raise ValueError(f"tracers[{index}].id: {entry.id!r} is already the id of tracers[{seen[entry.id]}]")
            seen[entry.id] = index
        return tracers
