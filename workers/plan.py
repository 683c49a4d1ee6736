"""Everything a worker process needs, resolved by the supervisor before spawning it.

Stdlib only on purpose: the worker receives the plan as msgpack on its stdin and
never imports the spec parser (pydantic, YAML), which keeps its memory small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class WorkerPlan:
    instance: str
    tracer: str
    folder: str
    program: str
    include_dirs: list[str]
    cflags: list[str]
    probes: list[dict[str, str]]  # {"kind": "tracepoint", "target": "sched:sched_process_exec"}
    event: dict[str, Any] | None  # {"struct", "ringbuf", "fields": [...]} as in the spec
    metrics: list[dict[str, Any]]
    hook: str | None
    values: dict[str, Any]  # the validated tracer arguments
    events_endpoint: str
    control_endpoint: str
    supervisor_pid: int
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 10.0
    batch_max: int = 4096
    batch_interval: float = 0.05
    metrics_interval: float = 10.0
    cgroup_ids: list[int] = field(default_factory=list)  # the cgroup filter's set, before any probe fires
    kind: str = "bcc"  # or "bpftrace": program is a script the worker runs with the bpftrace binary
    positional: list[str] = field(default_factory=list)  # bpftrace: $1, $2 … (the tracer's own parameters)
    env: dict[str, str] = field(default_factory=dict)  # bpftrace: BPFTRACE_* settings
    # Untrusted tracers (see workers/privileges.py and docs/custom-tracers.md):
    drop_privileges: bool = False  # no_new_privs at start; no capabilities after the attach
    drop_uid: int | None = None  # and this user from then on (None: stay uid 0 without capabilities)
    drop_gid: int | None = None
    event_rate: float = 0.0  # events per second taken from the ring buffer; 0: no limit
    event_burst: int = 0
    rlimit_as_extra: int = 0  # without a memory cgroup: address space allowed beyond what is mapped after attach
    nice: int = 0  # without a cpu cgroup: the workers' scheduling priority after attach

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerPlan:
        return cls(**data)
