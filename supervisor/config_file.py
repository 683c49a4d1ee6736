"""Read the agent's YAML config file and turn it, with the command line's overrides, into an AgentConfig.

A config that is wrong in any way raises :class:`ConfigError`, whose lines name the file,
the line, the field path and the problem; ``eunomiactl run`` then exits with
:data:`EX_CONFIG` (78, from sysexits.h) before anything is started, and the systemd unit
does not restart it (``RestartPreventExitStatus=78``).
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from supervisor.api.remote import TokenFileError, read_token_file
from supervisor.config import DEFAULT_TRACERS, SOCKET_NAME, AgentConfig, ContainerSettings, InstanceRequest
from supervisor.config_schema import ConfigFile, ControlTcpListener, MetricsListener
from supervisor.isolation.limits import UNLIMITED, IsolationConfig, parse_limits
from supervisor.store.writer import Retention
from supervisor.tracer_policy import CustomTracerPolicy
from workers import args as tracer_args
from workers.args import ArgsError
from workers.catalog import Catalog, default_search_path

EX_CONFIG = 78
DEFAULT_CONFIG = Path("/etc/eunomia/eunomia.yaml")
CONFIG_ENV = "EUNOMIA_CONFIG"

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    loc: Loc  # field path, e.g. ("tracers", 1, "args"); () for the whole file
    message: str
    line: int | None = None

    @property
    def where(self) -> str:
        text = ""
        for part in self.loc:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text or "(top level)"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ConfigError(ValueError):
    """A config the agent refuses to start with: one or more problems in ``source``."""

    def __init__(self, source: str, problems: list[Problem], lines: dict[Loc, int] | None = None) -> None:
        self.source = source
        self.problems = [p if p.line is not None or not lines else Problem(p.loc, p.message, _line_of(p.loc, lines))
                         for p in problems]
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}:{p.line}: {p}" if p.line else f"{self.source}: {p}" for p in self.problems]


@dataclass(slots=True)
class Overrides:
    """What ``eunomiactl run`` was given on the command line; None means 'not given'."""

    runtime_dir: Path | None = None
    db: Path | None = None
    socket: Path | None = None
    tracers: list[str] = field(default_factory=list)
    no_default_tracers: bool = False
    tracer_path: list[Path] = field(default_factory=list)
    heartbeat_timeout: float | None = None
    metrics_interval: float | None = None
    metrics_listen: str | None = None  # HOST:PORT, over listeners.metrics
    docker_socket: str | None = None
    container_grace: float | None = None
    no_containers: bool = False


# -- reading the file --------------------------------------------------------------------


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem]) -> None:
    """Record the line of every field path and find keys given twice (PyYAML keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is None:
                continue  # a merge key or a complex key: pydantic reports what is wrong with it
            if key in seen:
                problems.append(Problem((*loc, key), f"given twice (lines {seen[key]} and {line})", line))
            seen[key] = line
            lines[(*loc, key)] = line
            _walk(value_node, (*loc, key), lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _walk(item, (*loc, index), lines, problems)


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _check_file_safety(path: Path) -> list[Problem]:
    """The file decides which code runs as root (tracer_path): only root may be able to change it."""
    st = os.stat(path)
    problems = []
    if not stat.S_ISREG(st.st_mode):
        problems.append(Problem((), "not a regular file"))
    if st.st_uid != os.geteuid():
        problems.append(Problem((), f"owned by uid {st.st_uid}; it must belong to the agent's user "
                                    f"(uid {os.geteuid()}, root)"))
    if st.st_mode & 0o022:
        problems.append(Problem((), f"mode {stat.S_IMODE(st.st_mode):04o} lets others change it; "
                                    f"`chmod go-w {path}`"))
    return problems


def parse_text(text: str, source: str) -> tuple[ConfigFile, dict[Loc, int]]:
    """Validate the YAML text of a config file (``source`` names it in errors); also return
    the line of every field path, for the errors found later."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(source, [Problem((), f"not valid YAML: {exc.problem or exc}", line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [Problem((), f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem((), f"the file must be a mapping of settings, not {type(data).__name__}")])
    lines: dict[Loc, int] = {}
    problems: list[Problem] = []
    _walk(node, (), lines, problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        return ConfigFile.model_validate(data), lines
    except ValidationError as exc:
        found = [Problem(tuple(err["loc"]), err["msg"].removeprefix("Value error, ")) for err in exc.errors()]
        raise ConfigError(source, found, lines) from None


def load_file(path: Path) -> tuple[ConfigFile, dict[Loc, int]]:
    source = str(path)
    try:
        problems = _check_file_safety(path)
        if problems:
            raise ConfigError(source, problems)
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [Problem((), "file not found")]) from None
    except OSError as exc:
        raise ConfigError(source, [Problem((), f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [Problem((), f"not UTF-8 text (byte {exc.start})")]) from None
    return parse_text(text, source)


def choose_file(explicit: Path | None, no_config: bool) -> Path | None:
    """--config, then $EUNOMIA_CONFIG, then /etc/eunomia/eunomia.yaml when it exists."""
    if no_config:
        return None
    if explicit is not None:
        return explicit
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def configured_socket() -> Path | None:
    """The API socket named by the agent's config file ($EUNOMIA_CONFIG or the default), for clients;
    None when there is no readable, valid file (the client then tries the default socket)."""
    path = choose_file(None, False)
    if path is None:
        return None
    try:
        cfg, _ = load_file(path)
    except ConfigError:
        return None
    return cfg.api_socket or cfg.runtime_dir / SOCKET_NAME


# -- from the file and the flags to an AgentConfig ----------------------------------------


def build(cfg: ConfigFile, overrides: Overrides, config_file: Path | None = None) -> AgentConfig:
    """Flags override the file; the file overrides the built-in defaults."""
    if overrides.no_default_tracers:
        tracers: tuple[InstanceRequest, ...] = ()
    elif overrides.tracers:
        tracers = tuple(InstanceRequest(name) for name in overrides.tracers)
    elif cfg.tracers is not None:
        tracers = tuple(InstanceRequest(t.name, t.args, instance_id=t.id, export_handlers=tuple(t.export_handlers))
                        for t in cfg.tracers)
    else:
        tracers = DEFAULT_TRACERS
    return AgentConfig(
        runtime_dir=overrides.runtime_dir or cfg.runtime_dir,
        db_path=overrides.db or cfg.store.path,
        api_socket=overrides.socket or cfg.api_socket,
        tracer_path=[*default_search_path(), *cfg.tracer_path, *overrides.tracer_path],
        default_tracers=tracers,
        heartbeat_interval=cfg.heartbeat.interval,
        heartbeat_timeout=overrides.heartbeat_timeout or cfg.heartbeat.timeout,
        worker_supervisor_timeout=cfg.heartbeat.worker_timeout,
        start_timeout=cfg.workers.start_timeout,
        stop_timeout=cfg.workers.stop_timeout,
        stable_after=cfg.workers.stable_after,
        batch_interval=cfg.workers.batch_interval,
        batch_max=cfg.workers.batch_max,
        metrics_interval=overrides.metrics_interval or cfg.workers.metrics_interval,
        backoff=cfg.backoff.policy(),
        retention=Retention(max_events=cfg.store.retention.max_events,
                            events_max_age_s=cfg.store.retention.events_max_age,
                            samples_max_age_s=cfg.store.retention.samples_max_age,
                            prune_interval_s=cfg.store.retention.prune_interval),
        listeners=cfg.listeners,
        metrics_listen=overrides.metrics_listen or _host_port(cfg.listeners.metrics),
        containers=ContainerSettings(
            enabled=cfg.containers.enabled and not overrides.no_containers,
            docker_host=overrides.docker_socket or cfg.containers.docker_socket,
            grace=cfg.containers.grace if overrides.container_grace is None else overrides.container_grace,
            max_containers=cfg.containers.max_containers),
        config_file=config_file,
        state_file=cfg.state_file,
        isolation=IsolationConfig(
            custom=parse_limits(cfg.isolation.custom),
            builtin=None if cfg.isolation.builtin is None else parse_limits(cfg.isolation.builtin, UNLIMITED)),
        custom_tracers=CustomTracerPolicy.from_allow_list(cfg.custom_tracers.allow_api, cfg.custom_tracers.allow),
    )


def _host_port(listener: MetricsListener | None) -> str | None:
    if listener is None:
        return None
    address = str(listener.address)
    return f"[{address}]:{listener.port}" if ":" in address else f"{address}:{listener.port}"


# -- what needs the file system or the tracer catalog -------------------------------------


def check_control_tcp(listener: ControlTcpListener) -> list[Problem]:
    base: Loc = ("listeners", "control_tcp")
    problems = []
    try:
        read_token_file(listener.token_file)
    except TokenFileError as exc:
        problems.append(Problem((*base, "token_file"), str(exc)))
    if listener.tls_cert is not None and listener.tls_key is not None:
        try:
            key_mode = os.stat(listener.tls_key).st_mode
        except OSError as exc:
            problems.append(Problem((*base, "tls_key"), f"{listener.tls_key}: {exc.strerror}"))
        else:
            if key_mode & 0o007:
                problems.append(Problem((*base, "tls_key"), f"{listener.tls_key} is readable by everyone (mode "
                                        f"{stat.S_IMODE(key_mode):04o}); `chmod o-rwx {listener.tls_key}`"))
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(listener.tls_cert, listener.tls_key)
            except (OSError, ssl.SSLError) as exc:
                problems.append(Problem((*base, "tls_cert"), f"cannot load {listener.tls_cert} with "
                                        f"{listener.tls_key}: {exc}"))
    return problems


def check_tracers(config: AgentConfig, catalog: Catalog, from_file: bool) -> list[Problem]:
    """Every default tracer exists and its arguments fit it, before anything starts."""
    problems = []
    for index, request in enumerate(config.default_tracers):
        base: Loc = ("tracers", index) if from_file else (f"--tracer {request.tracer}",)
        try:
            tracer = catalog.get(request.tracer)
        except KeyError as exc:
            problems.append(Problem((*base, "name") if from_file else base, str(exc.args[0])))
            continue
        try:
            tracer_args.resolve(tracer.spec, request.args)
        except ArgsError as exc:
            problems.append(Problem((*base, "args") if from_file else base, str(exc)))
    return problems


def resolve(config_path: Path | None, overrides: Overrides) -> AgentConfig:
    """Everything ``eunomiactl run`` does before starting: raises ConfigError on any problem."""
    cfg, lines = load_file(config_path) if config_path is not None else (ConfigFile(), {})
    source = str(config_path) if config_path is not None else "built-in defaults"
    config = build(cfg, overrides, config_path)
    problems = []
    if cfg.listeners.control_tcp is not None:
        problems += check_control_tcp(cfg.listeners.control_tcp)
    if overrides.heartbeat_timeout is not None and overrides.heartbeat_timeout <= config.heartbeat_interval:
        message = (f"{overrides.heartbeat_timeout:g}s must be longer than heartbeat.interval "
                   f"({config.heartbeat_interval:g}s)")
        raise ConfigError("command line", [Problem(("--heartbeat-timeout",), message)])
    from_flags = bool(overrides.tracers) and not overrides.no_default_tracers
    tracer_problems = check_tracers(config, Catalog.discover(config.tracer_path), from_file=not from_flags)
    if from_flags and tracer_problems:
        raise ConfigError("command line", tracer_problems)
    problems += tracer_problems
    if problems:
        raise ConfigError(source, problems, lines)
    return config
