"""Where tracers come from: folders under the tracer search path, one tracer each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers import args as tracer_args
from workers.bt_spec import BpftraceSpec
from workers.ctypes_layout import HEADER_FIELDS, layout
from workers.folder_digest import folder_digest
from workers.plan import WorkerPlan
from workers.probes import fill, placeholders
from workers.spec import SPEC_FILE, Probe, SpecError, TracerSpec, load_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILTIN_DIR = REPO_ROOT / "bpf"
INCLUDE_DIR = BUILTIN_DIR / "include"


def _resolved_probe(probe: Probe, values: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {"kind": probe.kind, "target": fill(probe.target, values)}
    if probe.kind in ("uprobe", "uretprobe"):
        binary, colon, symbol = resolved["target"].partition(":")
        if not (binary and colon and symbol):
            names = ", ".join(placeholders(probe.target)) or "target"
            raise tracer_args.ArgsError(f"{names}: {resolved['target']!r} must look like 'binary:symbol'")
    if probe.function:
        resolved["function"] = probe.function
    if probe.frequency is not None:
        resolved["frequency"] = int(fill(str(probe.frequency), values))
    return resolved


def default_search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("EUNOMIA_TRACER_PATH", "").split(":") if p]
    return [BUILTIN_DIR, *extra]


#: Where a tracer came from: the agent's own ``bpf/``, a folder on the tracer path at start,
#: a host path named over the API, or an archive uploaded over the API.
ORIGINS = ("builtin", "configured", "path", "uploaded")


@dataclass(frozen=True, slots=True)
class Tracer:
    spec: TracerSpec | BpftraceSpec
    folder: Path
    builtin: bool
    origin: str = "configured"
    digest: str = ""  # folder_digest() when it was loaded
    source: str = ""  # what the operator named: the folder on the path, the host path, or "upload"

    @property
    def name(self) -> str:
        return self.spec.name

    def event_columns(self) -> list[str]:
        fields = self.spec.event.fields if self.spec.event else []
        return [name for name, _ in HEADER_FIELDS] + [f.name for f in fields]

    def plan(self, instance: str, given: dict[str, Any] | list[str] | None, **runtime: Any) -> WorkerPlan:
        """Validate arguments and resolve everything the worker needs (raises ArgsError)."""
        values = tracer_args.resolve(self.spec, given)
        if self.spec.kind == "bpftrace":
            return self._bpftrace_plan(instance, values, runtime)
        cflags = tracer_args.defines(self.spec, values)
        event = self.spec.event.model_dump() if self.spec.event else None
        if self.spec.event is not None:
            fields = [(f.name, f.type) for f in self.spec.event.fields]
            size = layout(fields, leading=HEADER_FIELDS).size
            cflags += [f"-DEUNOMIA_EVENT_SIZE={size}", f"-DEUNOMIA_EVENT_STRUCT={self.spec.event.struct}"]
        return WorkerPlan(
            instance=instance,
            tracer=self.name,
            folder=str(self.folder),
            program=str(self.folder / self.spec.program),
            include_dirs=[str(INCLUDE_DIR), str(self.folder)],
            cflags=cflags,
            probes=[_resolved_probe(p, values) for p in self.spec.probes],
            event=event,
            metrics=[m.model_dump() for m in self.spec.metrics],
            hook=str(self.folder / self.spec.hook) if self.spec.hook else None,
            values=values,
            **runtime,
        )


    def _bpftrace_plan(self, instance: str, values: dict[str, Any], runtime: dict[str, Any]) -> WorkerPlan:
        spec = self.spec
        assert isinstance(spec, BpftraceSpec)
        return WorkerPlan(
            instance=instance, tracer=self.name, folder=str(self.folder), program=str(self.folder / spec.program),
            include_dirs=[], cflags=[], probes=[{"kind": p.kind, "target": p.target} for p in spec.probes],
            event=spec.event.model_dump() if spec.event else None,
            metrics=[m.model_dump() for m in spec.metrics],
            hook=str(self.folder / spec.hook) if spec.hook else None, values=values, kind="bpftrace",
            positional=tracer_args.positional(spec, values),
            env={"BPFTRACE_STRLEN": str(spec.strlen), "BPFTRACE_PERF_RB_PAGES": str(values["ringbuf_pages"])},
            **runtime,
        )


@dataclass(slots=True)
class Catalog:
    tracers: dict[str, Tracer]
    errors: dict[str, SpecError]  # folder → why it could not be loaded

    @classmethod
    def discover(cls, search_path: list[Path] | None = None) -> Catalog:
        tracers: dict[str, Tracer] = {}
        errors: dict[str, SpecError] = {}
        for root in search_path if search_path is not None else default_search_path():
            if not root.is_dir():
                continue
            for folder in sorted(p for p in root.iterdir() if (p / SPEC_FILE).is_file()):
                try:
                    spec = load_spec(folder)
                except SpecError as exc:
                    errors[str(folder)] = exc
                    continue
                if spec.name in tracers:  # the first folder on the path wins
                    continue
                builtin = root == BUILTIN_DIR
                tracers[spec.name] = Tracer(spec, folder, builtin=builtin,
                                            origin="builtin" if builtin else "configured",
                                            digest=folder_digest(folder), source=str(folder))
        return cls(tracers, errors)

    def add(self, tracer: Tracer) -> None:
        """Add a tracer at run time; the caller checked that the name is free."""
        if tracer.name in self.tracers:
            raise ValueError(f"a tracer named {tracer.name!r} exists already")
        self.tracers[tracer.name] = tracer

    def remove(self, name: str) -> Tracer:
        """Forget a tracer; running instances keep their own reference to it."""
        return self.tracers.pop(name)

    def get(self, name: str) -> Tracer:
        try:
            return self.tracers[name]
        except KeyError:
            for folder, error in self.errors.items():
                if Path(folder).name == name:
                    raise KeyError(f"tracer {name!r} could not be loaded: {error}") from None
            raise KeyError(f"no tracer named {name!r} (known: {', '.join(sorted(self.tracers)) or 'none'})") from None
