"""Request and response bodies of the control API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExportHandlerSpec(BaseModel):
    """One export handler of an instance, as in Eunomia's API: ``{"name": "stdout", "args": []}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="handler type: sqlite, stdout, file, prometheus, otlp (GET /export-handlers)")
    args: list[str] | dict[str, Any] = Field(default_factory=list,
                                             description="the handler's arguments (docs/export.md)")


def _export_handlers() -> Any:
    return Field(default=None, description="where this instance's data goes; "
                 "default: the agent's default handlers ([{\"name\": \"sqlite\"}])")


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracer: str = Field(description="name of the tracer to run, e.g. 'tcpconnect'")
    args: dict[str, Any] | list[str] = Field(
        default_factory=dict,
        description="tracer arguments: {name: value}, or bcc-style flags such as ['-p', '42']",
    )
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
                           description="instance id; generated as '<tracer>-<n>' when omitted")
    export_handlers: list[ExportHandlerSpec] | None = _export_handlers()


class EunomiaStartRequest(BaseModel):
    """Eunomia's original ``POST /start`` body."""

    model_config = ConfigDict(extra="forbid")

    name: str
    args: list[str] = Field(default_factory=list)
    export_handlers: list[ExportHandlerSpec] | None = _export_handlers()


class Drops(BaseModel):
    kernel: int
    ipc: int
    hook: int
    store: int
    rate: int = Field(default=0, description="over the event-rate limit of an untrusted tracer")
    exporter: int = Field(description="events lost by export handlers other than sqlite, summed over them")


class ExportHandlerState(BaseModel):
    id: str = Field(description="the handler's name, with -2, -3 … for a second handler of the same type")
    name: str
    args: list[str] | dict[str, Any]
    hop: str = Field(description="where its losses count: store (sqlite) or exporter")
    sent: int = Field(description="records (events and samples) delivered")
    dropped: int = Field(description="events lost: buffer full, or still undelivered at shutdown")
    dropped_samples: int
    errors: int = Field(description="failed deliveries; each is retried")
    last_error: str
    queued: int = Field(description="records waiting in the handler's buffer")
    detail: dict[str, Any]


class ExportHandlerType(BaseModel):
    name: str
    description: str
    buffered: bool = Field(description="behind a bounded queue and a thread of its own, with retries")
    hop: str
    available: bool
    unavailable_reason: str | None


class Instance(BaseModel):
    id: str
    tracer: str
    state: str = Field(description="starting, running, backoff, stopping, stopped or fatal")
    pid: int | None
    restarts: int
    args: dict[str, Any] | list[str]
    values: dict[str, Any] = Field(description="every parameter's effective value")
    events: int = Field(description="events received by the supervisor")
    drops: Drops
    last_error: str | None
    last_error_log: str = Field(description="compiler or verifier output for load failures")
    state_since: float
    cgroup_filter: dict[str, Any] | None = Field(
        default=None, description="the cgroup filter (--container, --pod, --namespace, --host, --cgroup): what it "
        "selects and how many cgroups the kernel's map holds for it now")
    worker: dict[str, Any] = Field(description="the live worker's own counters: events read from the ring buffer "
                                   "(produced), handed to IPC (sent), memory (KiB) and CPU time")
    export_handlers: list[ExportHandlerState] = Field(default_factory=list)
    isolation: dict[str, Any] | None = Field(
        default=None, description="an untrusted tracer's limits, how they are enforced, and its usage (cgroup "
        "memory and throttling, BPF run time, the worker's uid, capabilities and no_new_privs); null: no limits")


class Parameter(BaseModel):
    name: str
    type: str
    flag: str | None
    long_flag: str
    default: Any
    description: str


class TracerInfo(BaseModel):
    name: str
    description: str
    builtin: bool
    folder: str
    origin: str = Field(default="", description="builtin, configured (tracer path at start), path or uploaded "
                        "(added over the API)")
    digest: str = Field(default="", description="sha256 over the folder's files (what an allow-list names)")
    source: str = Field(default="", description="the folder or host path it came from; 'upload' for archives")
    probes: list[str]
    parameters: list[Parameter]
    fields: list[str]
    metrics: list[str]


class Health(BaseModel):
    status: str
    version: str
    pid: int
    uptime_seconds: float
    instances: int
    states: dict[str, int]
    bad_frames: int
    last_bad_frame: str
    unknown_instance_frames: int
    store: dict[str, Any] | None
    tracer_errors: dict[str, str]
    metrics_address: str | None = Field(default=None, description="the TCP metrics listener, when configured")
    desired: dict[str, Any] | None = Field(
        default=None, description="the desired state: its file, saves, and problems (a state file that could not "
        "be restored, a save that failed, desired instances that do not exist); any problem makes the status "
        "'degraded'")


class Error(BaseModel):
    detail: str


class Container(BaseModel):
    id: str = Field(description="the runtime's full container id (64 hex digits)")
    name: str | None
    image: str | None = Field(description="the image reference the container was started from")
    image_id: str | None
    runtime: str = Field(description="docker, containerd, cri-o, podman, or kubernetes (runtime not known)")
    state: str = Field(description="created, running, exited, paused, or removed (kept for the grace period)")
    source: str = Field(description="what describes it: the runtime's API ('docker'), or 'cgroup' (id only)")
    pid: int | None = Field(description="the container's init process, in the host's pid namespace")
    k8s_namespace: str | None
    k8s_pod_name: str | None
    k8s_pod_uid: str | None
    k8s_container_name: str | None
    mntns: int | None = Field(description="mount namespace inode (as /proc/PID/ns/mnt shows it)")
    pidns: int | None
    netns: int | None
    labels: dict[str, str]
    created_at: float | None = Field(description="seconds since the epoch")
    cgroup_ids: list[int] = Field(description="cgroup ids seen for it (bpf_get_current_cgroup_id() of its tasks)")
    removed_seconds_ago: float | None = Field(description="since its removal; released after the grace period")


class ContainerList(BaseModel):
    containers: list[Container]
    cache: dict[str, Any] = Field(description="the registry: mode, sources, sizes and its counters (misses, "
                                  "unresolved, evictions, releases)")
