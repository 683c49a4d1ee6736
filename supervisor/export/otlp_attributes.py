"""Event columns and metric labels → OpenTelemetry attribute names (semantic conventions).

Fields with a name in the OpenTelemetry semantic conventions get that name (``pid`` →
``process.pid``); the other fields of an event stay under ``eunomia.<tracer>.<field>``, so two
tracers can never give one attribute two meanings or two types; fields every event has but
no convention names stay under ``eunomia.<field>``. Metric labels use the same names for
what identifies a process or a container (so logs and metrics join on ``process.pid`` or
``container.id``), and keep their documented names otherwise: a metric's attributes belong
to that metric alone. docs/otlp.md has the whole table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Convert = Callable[[Any], Any]

#: Fields every event has, and the container fields the agent adds: column → attribute.
COMMON: dict[str, str] = {
    "pid": "process.pid",
    "tid": "thread.id",
    "uid": "process.real_user.id",
    "comm": "process.executable.name",
    "gid": "eunomia.gid",  # the conventions name no group id
    "cgroup_id": "eunomia.cgroup_id",  # process.linux.cgroup is the path, not the id
    "container_id": "container.id",
    "container_name": "container.name",
    "container_image": "container.image.name",
    "container_image_name": "container.image.name",
    "container_image_id": "container.image.id",
    "container_runtime": "container.runtime.name",
    "k8s_pod_name": "k8s.pod.name",
    "k8s_pod_uid": "k8s.pod.uid",
    "k8s_namespace": "k8s.namespace.name",
    "k8s_namespace_name": "k8s.namespace.name",
    "k8s_container_name": "k8s.container.name",
    "k8s_node_name": "k8s.node.name",
}

#: Integer-valued conventions: a metric label (always text) is turned back into a number.
INTEGER_ATTRIBUTES = frozenset({"process.pid", "thread.id", "process.real_user.id", "process.parent_pid",
                                "network.local.port", "network.peer.port", "server.port"})


def _network_type(family: Any) -> Any:
    return {4: "ipv4", 6: "ipv6", "4": "ipv4", "6": "ipv6"}.get(family, family)


_LOCAL_PEER = {"saddr": ("network.local.address",), "sport": ("network.local.port",),
               "daddr": ("network.peer.address",), "dport": ("network.peer.port",)}
_CONNECT = {**_LOCAL_PEER, "daddr": ("server.address", "network.peer.address"),
            "dport": ("server.port", "network.peer.port")}
_TCP = {"network.transport": "tcp"}

#: Tracer fields that have a convention: tracer → column → attribute names (one value may
#: fill two conventions, as the HTTP client conventions ask for server.* and network.peer.*).
TRACER_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "process": {"ppid": ("process.parent_pid",), "filename": ("process.executable.path",),
                "argv": ("process.command_args",), "argc": ("process.args_count",),
                "exit_code": ("process.exit.code",)},
    "tcpconnect": {**_CONNECT, "family": ("network.type",)},
    "tcpconnlat": {**_CONNECT, "lport": ("network.local.port",), "family": ("network.type",)},
    "tcpretrans": {**_LOCAL_PEER, "family": ("network.type",)},
    "tcpstates": {**_LOCAL_PEER, "family": ("network.type",)},
    "tcprtt": {"laddr": ("network.local.address",), "lport": ("network.local.port",),
               "raddr": ("network.peer.address",), "rport": ("network.peer.port",), "family": ("network.type",)},
    "bindsnoop": {"addr": ("network.local.address",), "port": ("network.local.port",),
                  "family": ("network.type",)},
}

#: Attributes a tracer's events always carry.
TRACER_CONSTANTS: dict[str, dict[str, str]] = {
    "tcpconnect": _TCP, "tcpconnlat": _TCP, "tcpretrans": _TCP, "tcpstates": _TCP, "tcprtt": _TCP,
}

_CONVERT: dict[str, Convert] = {"network.type": _network_type}
_INT64 = (-(2**63), 2**63 - 1)


def attribute_value(value: Any) -> Any:
    """A column value as OTLP can carry it: integers outside int64 (kernel addresses) become
    decimal text, lists keep one type (text when mixed)."""
    if isinstance(value, bool) or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, (list, tuple)):
        items = [attribute_value(v) for v in value]
        if len({type(v) for v in items}) > 1:
            items = [str(v) for v in items]
        return items
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class EventMapper:
    """Turns one tracer's columns into a plan once, then rows into attributes quickly."""

    def __init__(self, tracer: str, columns: list[str]) -> None:
        self.tracer = tracer
        self.columns = list(columns)
        special = TRACER_FIELDS.get(tracer, {})
        self.plan: list[tuple[int, tuple[str, ...]]] = []
        for i, column in enumerate(self.columns):
            if column == "ts":
                continue
            if column in special:
                names = special[column]
            elif column in COMMON:
                names = (COMMON[column],)
            else:
                names = (f"eunomia.{tracer}.{column}",)
            self.plan.append((i, names))
        self.constants = dict(TRACER_CONSTANTS.get(tracer, {}))
        self.own = [(i, c) for i, c in enumerate(self.columns) if c not in COMMON and c != "ts"]
        index = {c: i for i, c in enumerate(self.columns)}
        self.ts_index = index.get("ts")
        self.pid_index = index.get("pid")
        self.comm_index = index.get("comm")

    def attributes(self, row: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.constants)
        for i, names in self.plan:
            value = row[i]
            if value is None:
                continue  # a field that does not apply to this event
            for name in names:
                convert = _CONVERT.get(name)
                out[name] = attribute_value(convert(value) if convert else value)
        return out

    def body(self, row: list[Any]) -> str:
        """``comm[pid] field=value …`` with the tracer's own fields, like ``eunomiactl trace``."""
        who = ""
        if self.comm_index is not None and self.pid_index is not None:
            who = f"{row[self.comm_index]}[{row[self.pid_index]}] "
        return who + " ".join(f"{c}={_text(row[i])}" for i, c in self.own if row[i] is not None)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value) if value else "[]"
    text = str(value)
    return f'"{text}"' if " " in text else text


def metric_attributes(labels: dict[str, str]) -> dict[str, Any]:
    """A series' labels (less ``instance``, ``tracer`` and ``le``) → data point attributes."""
    out: dict[str, Any] = {}
    for key, value in labels.items():
        if key in ("instance", "tracer", "le"):
            continue
        name = COMMON.get(key, key)
        if name in INTEGER_ATTRIBUTES:
            try:
                out[name] = int(value)
                continue
            except ValueError:
                pass
        out[name] = value
    return out
