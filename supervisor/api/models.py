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
    rate: int = Field(default=0, description="over the event-rate limit of an untrusted tracer")


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


class Error(BaseModel):
    detail: str
