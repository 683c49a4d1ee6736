"""The spec of a bpftrace tracer (``kind: bpftrace`` in ``tracer.yaml``, script ``program.bt``).

Same folder layout, names, parameters, hook and example as a BCC tracer; what differs:

* the probes are the script's own (read from it, for the docs and ``doctor``);
* parameters reach the script as positional parameters, in the order they are listed
  (the first is ``$1``); ``-p``/``-n`` and the agent's self-filter are added by the worker;
* an event is one ``printf`` call in a probe block; its text is read as ``key=value`` pairs
  (``format: kv``) or as a JSON object (``format: json``), keys = the spec's field names;
* a metric is a map: ``counter`` (``count()``, ``sum()``), ``gauge`` (``avg()``, ``min()``,
  ``max()``, or a plain value) or ``histogram`` (``hist()``, ``lhist()``, ``stats()``);
  its ``labels`` name the map's keys in order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from workers import bt_script
from workers.spec import (
    _IDENT,
    RESERVED_FIELD_NAMES,
    Example,
    Parameter,
    SpecError,
    _Model,
    check_parameter_names,
)

DEFAULT_PROGRAM = "program.bt"
MAX_STRLEN = 200  # bpftrace's limit for BPFTRACE_STRLEN


@dataclasses.dataclass(frozen=True, slots=True)
class ScriptProbe:
    """A probe read from the script: the same ``kind``/``target`` view as a BCC probe."""

    kind: str
    target: str
    function: str | None = None
    frequency: int | None = None


class BtParameter(Parameter):
    """Reaches the script as a positional parameter (``$1`` …), never as a macro."""

    def _check_define(self) -> None:
        if self.define is not None:
            raise ValueError(f"parameter {self.name}: bpftrace parameters have no 'define' "
                             "(they are the script's positional parameters $1, $2 … in the order listed)")


class BtEventField(_Model):
    name: Annotated[str, Field(pattern=_IDENT)]
    type: Literal["int", "str"] = "str"
    description: str = ""
    enum: dict[int, str] | None = None
    # What the BCC field has and a printf line does not (read by the doc generator).
    format: ClassVar[None] = None
    when: ClassVar[None] = None

    @model_validator(mode="after")
    def _enum_on_int(self) -> BtEventField:
        if self.enum is not None and self.type != "int":
            raise ValueError(f"field {self.name}: enum needs type int")
        return self


class BtEventSpec(_Model):
    format: Literal["kv", "json"] = "kv"
    fields: Annotated[list[BtEventField], Field(min_length=1)]

    @model_validator(mode="after")
    def _names(self) -> BtEventSpec:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"event field names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
        reserved = sorted(set(names) & RESERVED_FIELD_NAMES)
        if reserved:
            raise ValueError(f"event fields {reserved} are reserved (every event has them already)")
        return self


class BtLabel(_Model):
    name: Annotated[str, Field(pattern=_IDENT)]
    stack: ClassVar[None] = None  # no stack labels: bpftrace prints stacks as text keys


class BtMetric(_Model):
    """A map of the script; the map ``@NAME`` is the metric ``NAME`` (exported as ``eunomia_NAME``)."""

    name: Annotated[str, Field(pattern=_IDENT)]
    type: Literal["counter", "gauge", "histogram"]
    help: str
    labels: list[BtLabel] = []
    scale: float = 1.0

    @field_validator("labels", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _naming(self) -> BtMetric:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"metric {self.name}: counters end in _total (Prometheus naming)")
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names) or "le" in names:
            raise ValueError(f"metric {self.name}: label names must be unique and not 'le'")
        return self


class BpftraceSpec(_Model):
    kind: Literal["bpftrace"]
    name: Annotated[str, Field(pattern=_IDENT)]
    description: str
    program: str = DEFAULT_PROGRAM
    hook: str | None = None
    parameters: list[BtParameter] = []
    event: BtEventSpec | None = None
    metrics: list[BtMetric] = []
    example: Example | None = None
    strlen: Annotated[int, Field(ge=1, le=MAX_STRLEN)] = 64  # bytes bpftrace keeps of a str() (BPFTRACE_STRLEN)
    # Read from the script by load_spec(); a spec may not list them itself.
    probes: list[ScriptProbe] = []

    @model_validator(mode="before")
    @classmethod
    def _no_probes(cls, data: Any) -> Any:
        if isinstance(data, dict) and "probes" in data:
            raise ValueError("probes: a bpftrace tracer's probes are the ones in its script; remove 'probes'")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> BpftraceSpec:
        check_parameter_names(list(self.parameters))
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metric names (= map names) must be unique: {sorted(names)}")
        if self.event is None and not self.metrics:
            raise ValueError("a tracer needs an event section, metrics, or both")
        return self


def with_script_probes(spec: BpftraceSpec, folder: Path, source: str) -> BpftraceSpec:
    """The spec with the probes read from its script; checks that every metric's map is used there."""
    path = Path(folder) / spec.program
    try:
        text = path.read_text(encoding="utf-8")
        found = bt_script.probes(text)
        used = bt_script.maps(text)
    except (OSError, UnicodeDecodeError, bt_script.ScriptError) as exc:
        raise SpecError(source, [f"program: cannot read {path}: {exc}"]) from None
    problems = [f"metrics: {m.name}: the script has no map @{m.name}" for m in spec.metrics if m.name not in used]
    if not found:
        problems.append(f"program: {path} has no probe")
    if problems:
        raise SpecError(source, problems)
    probes = [ScriptProbe(*bt_script.probe_kind(p)) for p in found]
    return spec.model_copy(update={"probes": probes})
