"""The declarative tracer spec (``tracer.yaml``) and its validation.

A tracer is a folder: ``tracer.yaml`` + ``program.bpf.c`` (+ optional ``hook.py``).
Built-in tracers and users' own ones use exactly this format. Everything is checked
here, before anything is compiled, and every error names the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workers.ctypes_layout import HEADER_NAMES, TypeError_, parse_type
from workers.probes import PERF_EVENTS, placeholders

if TYPE_CHECKING:
    from workers.bt_spec import BpftraceSpec

SPEC_FILE = "tracer.yaml"
_IDENT = r"^[a-z][a-z0-9_]*$"
_C_MACRO = r"^[A-Z][A-Z0-9_]*$"
_TRACEPOINT = re.compile(r"^[a-z0-9_]+:[a-zA-Z0-9_]+$")
#: Names the runtime adds to every event; spec fields may not reuse them.
RESERVED_FIELD_NAMES = HEADER_NAMES | {"tracer", "instance", "event_id"}


class SpecError(ValueError):
    """A tracer spec that is not valid; ``problems`` lists 'where: what' strings."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Probe(_Model):
    """Where the program attaches. Only stable ABIs: tracepoints, uprobes, perf events.

    ``uprobe``/``uretprobe`` targets are ``binary:symbol`` (a path, or a library name such as
    ``c`` for libc) and ``perf_event`` names a perf event; both call the C function named by
    ``function``. Targets and ``frequency`` may use ``{parameter}`` placeholders, filled in
    user space when the tracer starts (they never reach C).
    """

    tracepoint: str | None = None
    uprobe: str | None = None
    uretprobe: str | None = None
    perf_event: str | None = None
    function: Annotated[str | None, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = None
    frequency: int | str | None = None  # perf_event: samples per second on each CPU

    @model_validator(mode="after")
    def _exactly_one(self) -> Probe:
        given = [k for k in ("tracepoint", "uprobe", "uretprobe", "perf_event") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a probe names exactly one of tracepoint, uprobe, uretprobe, perf_event")
        if self.tracepoint:
            if not _TRACEPOINT.match(self.tracepoint):
                raise ValueError(f"tracepoint {self.tracepoint!r} must look like 'category:name'")
            if self.function or self.frequency is not None:
                raise ValueError("a tracepoint probe takes no function or frequency (use TRACEPOINT_PROBE)")
            return self
        if not self.function:
            raise ValueError(f"a {given[0]} probe needs 'function': the C function to run")
        target = self.uprobe or self.uretprobe
        if target is not None and ":" not in target and not placeholders(target):
            raise ValueError(f"{given[0]} {target!r} must look like 'binary:symbol'")
        if self.perf_event is not None:
            if self.perf_event not in PERF_EVENTS:
                raise ValueError(f"perf_event {self.perf_event!r} is not one of {sorted(PERF_EVENTS)}")
            if self.frequency is None:
                raise ValueError("a perf_event probe needs a frequency (samples per second)")
        elif self.frequency is not None:
            raise ValueError("frequency applies to perf_event probes only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("tracepoint", "uprobe", "uretprobe", "perf_event") if getattr(self, k))

    @property
    def target(self) -> str:
        return self.tracepoint or self.uprobe or self.uretprobe or self.perf_event or ""


class Parameter(_Model):
    """A tracer option. It reaches the program only as a numeric ``-D`` macro; a ``str``
    parameter never reaches C at all (it fills ``{placeholders}`` in probe targets)."""

    name: Annotated[str, Field(pattern=_IDENT)]
    type: Literal["int", "bool", "comm", "str"]
    define: Annotated[str | None, Field(pattern=_C_MACRO)] = None
    description: str
    required: bool = False
    flag: Annotated[str | None, Field(pattern=r"^-[a-zA-Z]$")] = None
    default: int | bool | str | None = None
    minimum: int | None = None
    maximum: int | None = None
    power_of_two: bool = False

    def _check_define(self) -> None:
        if (self.type == "str") != (self.define is None):
            raise ValueError(f"parameter {self.name}: int, bool and comm parameters need a 'define'; "
                             "str parameters cannot have one (they never reach C)")

    @model_validator(mode="after")
    def _default_fits(self) -> Parameter:
        self._check_define()
        if self.required and self.default is not None:
            raise ValueError(f"parameter {self.name}: a required parameter has no default")
        if self.type == "bool" and self.default is not None and not isinstance(self.default, bool):
            raise ValueError(f"parameter {self.name}: default of a bool must be true or false")
        if self.type == "int" and self.default is not None and (
            isinstance(self.default, bool) or not isinstance(self.default, int)
        ):
            raise ValueError(f"parameter {self.name}: default of an int must be an integer")
        if self.type == "int" and isinstance(self.default, int) and not isinstance(self.default, bool) and (
            (self.minimum is not None and self.default < self.minimum)
            or (self.maximum is not None and self.default > self.maximum)
        ):
            bounds = f"[{self.minimum}, {self.maximum}]"
            raise ValueError(f"parameter {self.name}: default {self.default} is outside {bounds}")
        if self.type != "int" and (self.minimum is not None or self.maximum is not None or self.power_of_two):
            raise ValueError(f"parameter {self.name}: minimum/maximum/power_of_two apply to int only")
        return self

    @property
    def long_flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class EventField(_Model):
    name: Annotated[str, Field(pattern=_IDENT)]
    type: str
    description: str = ""
    format: Literal["ip", "family"] | None = None
    family_field: str | None = None  # for format: ip
    count_field: str | None = None  # for char[N][M]: how many entries are valid
    enum: dict[int, str] | None = None
    when: dict[str, list[str]] | None = None  # present only when another (enum) field has these values
    resolve: Literal["proc_ppid"] | None = None  # filled in user space when the kernel gave 0

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        try:
            parse_type(value)
        except TypeError_ as exc:
            raise ValueError(str(exc)) from None
        return value


class EventSpec(_Model):
    struct: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")] = "event"
    ringbuf: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")] = "events"
    fields: list[EventField]

    @model_validator(mode="after")
    def _references(self) -> EventSpec:
        by_name = {f.name: f for f in self.fields}
        if len(by_name) != len(self.fields):
            names = [f.name for f in self.fields]
            raise ValueError(f"event field names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
        for f in self.fields:
            if f.name in RESERVED_FIELD_NAMES:
                raise ValueError(f"event field {f.name!r} is reserved (every event has it already)")
            kind = parse_type(f.type).kind
            if f.format == "ip" and (kind != "bytes" or not f.family_field):
                raise ValueError(f"field {f.name}: format ip needs type u8[16] and family_field")
            if f.format == "family" and kind != "int":
                raise ValueError(f"field {f.name}: format family needs an integer type")
            if f.enum is not None and kind != "int":
                raise ValueError(f"field {f.name}: enum needs an integer type")
            if f.count_field is not None and kind != "strlist":
                raise ValueError(f"field {f.name}: count_field applies to char[N][M] only")
            for ref in filter(None, (f.family_field, f.count_field)):
                if ref not in by_name or parse_type(by_name[ref].type).kind != "int":
                    raise ValueError(f"field {f.name}: {ref!r} is not an integer field of this event")
            for ref, values in (f.when or {}).items():
                target = by_name.get(ref)
                if target is None or not target.enum:
                    raise ValueError(f"field {f.name}: 'when' needs an enum field, {ref!r} is not one")
                unknown = set(values) - set(target.enum.values())
                if unknown:
                    raise ValueError(f"field {f.name}: 'when' values {sorted(unknown)} are not in {ref}'s enum")
        return self


class MetricLabel(_Model):
    """One member of a metric map's key. A stack label holds a stack id (``s32``) from
    ``stack_map`` and becomes the folded stack (outermost frame first, ``;``-separated);
    user stacks are symbolised for the process in the label named by ``pid_label``."""

    name: Annotated[str, Field(pattern=_IDENT)]
    type: str
    format: Literal["ip", "family", "syscall"] | None = None
    enum: dict[int, str] | None = None
    stack: Literal["user", "kernel"] | None = None
    stack_map: Annotated[str | None, Field(pattern=r"^[a-z_][a-z0-9_]*$")] = None
    pid_label: str | None = None

    @model_validator(mode="after")
    def _stack_fields(self) -> MetricLabel:
        if self.stack is not None and (self.type != "s32" or not self.stack_map):
            raise ValueError(f"label {self.name}: a stack label is an s32 stack id with a stack_map")
        if self.stack is None and (self.stack_map or self.pid_label):
            raise ValueError(f"label {self.name}: stack_map and pid_label apply to stack labels only")
        if self.stack == "user" and not self.pid_label:
            raise ValueError(f"label {self.name}: a user stack needs pid_label (whose process to symbolise)")
        return self

    @field_validator("type")
    @classmethod
    def _scalar_or_string(cls, value: str) -> str:
        try:
            kind = parse_type(value).kind
        except TypeError_ as exc:
            raise ValueError(str(exc)) from None
        if kind not in ("int", "str"):
            raise ValueError(f"label type {value!r}: labels are integers or char[N]")
        return value


class CgroupRows(_Model):
    """A counter's fast path: cgroups that have a row count in ``map``, a per-CPU array of
    u64 indexed by ``row * columns + column``, where the column is the metric's second label;
    the metric's own hash map keeps counting for cgroups without a row and columns out of
    range. The worker assigns rows to the busiest cgroups (see workers/cgroup_rows.py)."""

    map: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")]
    columns: Annotated[int, Field(ge=1, le=4096)]


class Metric(_Model):
    """An aggregation map in the kernel. The map name is the metric name (ebpf_exporter's rule)."""

    name: Annotated[str, Field(pattern=_IDENT)]
    type: Literal["counter", "histogram"]
    help: str
    labels: list[MetricLabel] = []
    bucket: Literal["log2"] = "log2"  # histograms: key ends with a u32 log2 slot
    # The kernel counts in integers: multiply counter values and bucket bounds by this
    # (e.g. 1e-9 for nanoseconds → seconds, so the metric follows Prometheus' base units).
    scale: float = 1.0
    # Read and clear the map at every read; the worker keeps the running
    # totals, so the exported counter stays monotonic while the kernel maps never fill up.
    drain: bool = False
    cgroup_rows: CgroupRows | None = None

    @model_validator(mode="after")
    def _naming(self) -> Metric:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"metric {self.name}: counters end in _total (Prometheus naming)")
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names) or "le" in names:
            raise ValueError(f"metric {self.name}: label names must be unique and not 'le'")
        for label in self.labels:
            if label.pid_label is not None and label.pid_label not in names:
                raise ValueError(f"metric {self.name}: pid_label {label.pid_label!r} is not one of its labels")
        if any(label.stack for label in self.labels) and not self.drain:
            raise ValueError(f"metric {self.name}: metrics keyed by stacks must set drain: true "
                             "(stack ids are only valid until the stack map is cleared)")
        if self.cgroup_rows is not None:
            kinds = [(label.name, label.type) for label in self.labels]
            if self.type != "counter" or len(kinds) != 2 or kinds[0] != ("cgroup_id", "u64") \
                    or self.labels[1].type != "u32":
                raise ValueError(f"metric {self.name}: cgroup_rows needs a counter whose labels are exactly "
                                 "cgroup_id (u64) and one u32 label (the column)")
            if self.cgroup_rows.map == self.name:
                raise ValueError(f"metric {self.name}: the cgroup_rows map needs a name of its own")
        return self


class Example(_Model):
    """How the tracer's doc page example is made (``python -m supervisor.docgen --capture``):
    ``eunomiactl trace NAME *args`` runs while ``workload`` (a shell command) runs once."""

    args: list[str] = []
    workload: str
    duration: Annotated[float, Field(gt=0, le=60)] = 4.0
    lines: Annotated[int, Field(ge=1, le=100)] = 20  # of output kept on the page


def check_parameter_names(parameters: list[Parameter]) -> None:
    """A tracer's own parameters may not reuse each other's or the runtime's names and flags."""
    from workers.args import COMMON_PARAMETERS, ROW_PARAMETERS  # the runtime's own options

    names = [p.name for p in parameters]
    common = {p.name for p in COMMON_PARAMETERS + ROW_PARAMETERS}
    clash = (set(names) & common) | {n for n in names if names.count(n) > 1}
    if clash:
        raise ValueError(f"parameter names {sorted(clash)} are duplicated or reserved by the runtime")
    flags = [p.flag for p in list(parameters) + list(COMMON_PARAMETERS + ROW_PARAMETERS) if p.flag]
    if len(set(flags)) != len(flags):
        raise ValueError(f"parameter flags collide: {sorted(f for f in flags if flags.count(f) > 1)}")


class TracerSpec(_Model):
    """A BCC tracer (``kind: bcc``, the default); bpftrace tracers: :mod:`workers.bt_spec`."""

    kind: Literal["bcc"] = "bcc"
    name: Annotated[str, Field(pattern=_IDENT)]
    description: str
    program: str = "program.bpf.c"
    hook: str | None = None
    probes: Annotated[list[Probe], Field(min_length=1)]
    parameters: list[Parameter] = []
    event: EventSpec | None = None
    metrics: list[Metric] = []
    example: Example | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TracerSpec:
        from workers.args import COMMON_PARAMETERS, ROW_PARAMETERS  # the runtime's own options

        check_parameter_names(self.parameters)
        defines = []
        for p in self.parameters + list(COMMON_PARAMETERS + ROW_PARAMETERS):
            if p.define is None:
                continue
            defines += [f"{p.define}{s}" for s in ("_SET", "_LO", "_HI")] if p.type == "comm" else [p.define]
        if len(set(defines)) != len(defines):
            clash = sorted({d for d in defines if defines.count(d) > 1})
            raise ValueError(f"parameter 'define' macros collide: {clash}")
        metric_names = [m.name for m in self.metrics]
        if len(set(metric_names)) != len(metric_names):
            raise ValueError(f"metric names (= map names) must be unique: {sorted(metric_names)}")
        row_maps = [m.cgroup_rows.map for m in self.metrics if m.cgroup_rows]
        taken = set(metric_names) & set(row_maps) or {n for n in row_maps if row_maps.count(n) > 1}
        if taken:
            raise ValueError(f"cgroup_rows maps need names of their own, not another metric's or each other's: "
                             f"{sorted(taken)}")
        by_name = {p.name: p for p in self.parameters + list(COMMON_PARAMETERS)}
        for i, probe in enumerate(self.probes):
            for ref in placeholders(probe.target) + placeholders(probe.frequency):
                if ref not in by_name:
                    raise ValueError(f"probes.{i}: {{{ref}}} is not a parameter of this tracer")
            if isinstance(probe.frequency, str) and not placeholders(probe.frequency):
                raise ValueError(f"probes.{i}.frequency: a number, or a {{parameter}} of type int")
            for ref in placeholders(probe.frequency):
                if by_name[ref].type != "int":
                    raise ValueError(f"probes.{i}.frequency: {{{ref}}} must be an int parameter")
        if self.event is None and not self.metrics:
            raise ValueError("a tracer needs an event section, metrics, or both")
        return self


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {msg}")
    return problems


def parse_spec(data: Any, source: str) -> TracerSpec | BpftraceSpec:
    """Validate a spec of either kind: ``kind: bcc`` (the default) or ``kind: bpftrace``."""
    from workers.bt_spec import BpftraceSpec

    if not isinstance(data, dict):
        raise SpecError(source, [f"the spec must be a mapping, not {type(data).__name__}"])
    kind = data.get("kind", "bcc")
    models: dict[str, type[TracerSpec] | type[BpftraceSpec]] = {"bcc": TracerSpec, "bpftrace": BpftraceSpec}
    if kind not in models:
        raise SpecError(source, [f"kind: {kind!r} is not one of 'bcc', 'bpftrace'"])
    try:
        return models[kind].model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, _format_errors(exc)) from None


def load_spec(folder: Path) -> TracerSpec | BpftraceSpec:
    """Read and validate ``folder/tracer.yaml``; check the files it names exist."""
    folder = Path(folder)
    path = folder / SPEC_FILE
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise SpecError(str(path), ["file not found"]) from None
    except OSError as exc:
        raise SpecError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from None
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"not valid YAML: {exc}"]) from None
    spec = parse_spec(data, str(path))
    named = (("program", spec.program), ("hook", spec.hook))
    missing = [f"{key}: {name!r} not found in {folder}"
               for key, name in named if name and not (folder / name).is_file()]
    if spec.name != folder.name:
        missing.append(f"name: {spec.name!r} differs from its folder name {folder.name!r}")
    if missing:
        raise SpecError(str(path), missing)
    if spec.kind == "bpftrace":
        from workers.bt_spec import with_script_probes

        return with_script_probes(spec, folder, str(path))
    return spec
