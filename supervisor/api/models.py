"""Request and response bodies of the control API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracer: str = Field(description="name of the tracer to run, e.g. 'tcpconnect'")
    args: dict[str, Any] | list[str] = Field(
        default_factory=dict,
        description="tracer arguments: {name: value}, or bcc-style flags such as ['-p', '42']",
    )
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
                           description="instance id; generated as '<tracer>-<n>' when omitted")


class EunomiaStartRequest(BaseModel):
    """Eunomia's original ``POST /start`` body (export handlers arrive with a later version)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    args: list[str] = Field(default_factory=list)


class Drops(BaseModel):
    kernel: int
    ipc: int
    hook: int
    store: int


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
    worker: dict[str, Any] = Field(description="the live worker's own counters: events read from the ring buffer "
                                   "(produced), handed to IPC (sent), memory (KiB) and CPU time")


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
