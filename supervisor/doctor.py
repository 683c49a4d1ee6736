"""What this host can and cannot trace, and why (``eunomiactl doctor``)."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workers.catalog import Catalog
from workers.loader import missing_tracepoints, tracefs


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str


def _headers(release: str, modules: Path = Path("/lib/modules")) -> Check:
    build = modules / release / "build"
    if not build.exists():
        return Check("kernel headers", "fail", f"missing: {build} does not exist; run `make setup`")
    version_file = build / "include" / "config" / "kernel.release"
    found = version_file.read_text().strip() if version_file.is_file() else "unknown"
    target = os.path.realpath(build)
    if found == release:
        return Check("kernel headers", "ok", f"exact: {target}")
    return Check("kernel headers", "warn",
                 f"approximate: {target} is for {found}, not {release}. Tracers still work because they read "
                 "only tracepoint arguments and helpers; programs that dereference kernel structs would not")


def _bcc() -> Check:
    try:
        import bcc
    except ImportError as exc:
        return Check("bcc", "fail", f"python bindings missing ({exc}); install python3-bpfcc (`make setup`)")
    return Check("bcc", "ok", f"version {getattr(bcc, '__version__', 'unknown')}")


def _bpftrace() -> Check:
    from workers.bt_runtime import bpftrace_binary

    binary = bpftrace_binary()
    if binary is None:
        return Check("bpftrace", "warn", "not installed: bpftrace tracers cannot run (apt-get install bpftrace, "
                                         "or `make setup`)")
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("bpftrace", "warn", f"{binary} does not run: {exc}")
    return Check("bpftrace", "ok", f"{version or 'unknown version'} ({binary})")


def run_checks(catalog: Catalog) -> dict[str, Any]:
    release = platform.release()
    checks = [Check("kernel", "ok", release)]
    checks.append(Check("root", "ok" if os.geteuid() == 0 else "fail",
                        "running as root" if os.geteuid() == 0 else "eBPF needs root (CAP_BPF, CAP_PERFMON)"))
    btf = Path("/sys/kernel/btf/vmlinux")
    checks.append(Check("BTF", "ok" if btf.exists() else "warn",
                        str(btf) if btf.exists() else "no /sys/kernel/btf/vmlinux (not needed by BCC tracers)"))
    tfs = tracefs()
    checks.append(Check("tracefs", "ok" if tfs else "fail",
                        str(tfs) if tfs else "not mounted: mount -t tracefs nodev /sys/kernel/tracing"))
    checks.append(_headers(release))
    checks.append(_bcc())
    bpftrace = _bpftrace()
    checks.append(bpftrace)
    kprobes = tfs is not None and (tfs / "kprobe_events").exists()
    checks.append(Check("kprobes", "ok" if kprobes else "warn",
                        "available" if kprobes else "absent (no kprobe_events): kernel functions cannot be "
                        "traced; Eunomia's tracers use tracepoints, uprobes and perf events only"))
    uprobes = tfs is not None and (tfs / "uprobe_events").exists()
    checks.append(Check("uprobes", "ok" if uprobes else "warn",
                        "available" if uprobes else "absent (no uprobe_events): funclatency, memleak cannot run"))
    perf = Path("/proc/sys/kernel/perf_event_paranoid").exists()
    checks.append(Check("perf events", "ok" if perf else "warn",
                        "available" if perf else "absent (no perf_event_paranoid): profile cannot run"))
    v2_roots = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))  # hybrid, then unified hierarchy
    cgroup2 = next((p for p in v2_roots if (p / "cgroup.procs").exists() and not (p / "tasks").exists()), None)
    checks.append(Check("cgroup v2", "ok" if cgroup2 else "warn",
                        str(cgroup2) if cgroup2 else "not found: cgroup ids will not map to containers"))
    tracers = []
    for tracer in catalog.tracers.values():
        points = [p.target for p in tracer.spec.probes if p.kind == "tracepoint"]
        missing = missing_tracepoints(points, tfs) if tfs else points
        reasons = [f"missing tracepoint {m}" for m in missing]
        kinds = {p.kind for p in tracer.spec.probes}
        if kinds & {"uprobe", "uretprobe"} and not uprobes:
            reasons.append("needs uprobes, which this kernel lacks")
        if "perf_event" in kinds and not perf:
            reasons.append("needs perf events, which this kernel lacks")
        if kinds & {"kprobe", "kretprobe", "kfunc", "kretfunc"} and not kprobes:
            reasons.append("needs kprobes (kernel functions), which this kernel lacks: use tracepoints")
        if tracer.spec.kind == "bpftrace" and bpftrace.status != "ok":
            reasons.append("needs bpftrace, which is not installed")
        tracers.append({"name": tracer.name, "can_run": not reasons,
                        "reason": "; ".join(reasons) if reasons else "all probes available"})
    for folder, error in catalog.errors.items():
        tracers.append({"name": Path(folder).name, "can_run": False, "reason": f"invalid spec: {error}"})
    return {"checks": [asdict(c) for c in checks], "tracers": tracers}
