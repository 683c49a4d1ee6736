"""Tracer arguments: from an API dict or bcc-style flags to validated values and ``-D`` macros.

Values never reach C as text: ints and bools become numbers, and a ``comm`` filter is
packed into two 64-bit integers that the program compares with the task's comm.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from workers.spec import Parameter, TracerSpec

if TYPE_CHECKING:
    from workers.bt_spec import BpftraceSpec

COMM_LEN = 16  # TASK_COMM_LEN

COMMON_PARAMETERS: tuple[Parameter, ...] = (
    Parameter(name="pid", type="int", flag="-p", define="EUNOMIA_FILTER_PID", default=0, minimum=0,
              maximum=4194304, description="only trace this process (thread group id); 0 traces all"),
    Parameter(name="comm", type="comm", flag="-n", define="EUNOMIA_FILTER_COMM", default="",
              description="only trace tasks whose comm is exactly this (at most 15 characters)"),
    Parameter(name="ringbuf_pages", type="int", define="EUNOMIA_RINGBUF_PAGES", default=256, minimum=1,
              maximum=65536, power_of_two=True, description="ring buffer size in pages (a power of two)"),
    # The cgroup filter: resolved to cgroup ids by the supervisor, checked in the kernel.
    Parameter(name="container", type="str",
              description="only trace this container (name, full id or id prefix of at least 12 characters)"),
    Parameter(name="pod", type="str", description="only trace the containers of this Kubernetes pod (its name)"),
    Parameter(name="namespace", type="str", description="only trace the containers of this Kubernetes namespace"),
    Parameter(name="host", type="bool", define="EUNOMIA_FILTER_HOST", default=False,
              description="only trace host processes (in no container)"),
    Parameter(name="cgroup", type="str",
              description="only trace tasks in this cgroup v2 directory or below it (a path under the "
                          "cgroup v2 mount, e.g. /system.slice/nginx.service)"),
)
#: Only for tracers with ``cgroup_rows`` metrics (workers/cgroup_rows.py).
ROW_PARAMETERS: tuple[Parameter, ...] = (
    Parameter(name="cgroup_rows", type="int", define="EUNOMIA_CGROUP_ROWS", default=32, minimum=0, maximum=1024,
              description="cgroups counted on the fast path (a per-CPU array row each; the rest count in a "
                          "hash map); 0 turns the rows off"),
    Parameter(name="cgroup_row_idle", type="int", define="EUNOMIA_CGROUP_ROW_IDLE", default=60, minimum=1,
              maximum=86400, description="seconds without a count after which a cgroup gives its row back"),
)
CGROUP_SELECTORS = ("container", "pod", "namespace", "cgroup")
FILTER_INCLUDE, FILTER_EXCLUDE = 1, 2  # EUNOMIA_FILTER_CGROUP in eunomia.h


class ArgsError(ValueError):
    """Arguments that do not fit the tracer's parameters; the message names the parameter."""


#: The common options a bpftrace tracer does not take: its filter is in the script (see bt_script).
NOT_FOR_BPFTRACE = frozenset({*CGROUP_SELECTORS, "host"})


def parameters(spec: TracerSpec | BpftraceSpec) -> list[Parameter]:
    common = [p for p in COMMON_PARAMETERS if spec.kind != "bpftrace" or p.name not in NOT_FOR_BPFTRACE]
    if isinstance(spec, TracerSpec) and any(m.cgroup_rows for m in spec.metrics):
        common += ROW_PARAMETERS
    return common + list(spec.parameters)


def _not_for_bpftrace(spec: TracerSpec | BpftraceSpec, names: set[str]) -> None:
    refused = sorted(names & NOT_FOR_BPFTRACE) if spec.kind == "bpftrace" else []
    if refused:
        raise ArgsError(f"--{refused[0]}: the cgroup filter is not available for bpftrace tracers "
                        f"({spec.name}); filter on `cgroup` in the script instead")


def _coerce(param: Parameter, value: Any) -> int | bool | str:
    where = f"parameter {param.name!r}"
    if param.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ArgsError(f"{where}: expected true or false, got {value!r}")
    if param.type == "int":
        if isinstance(value, bool):
            raise ArgsError(f"{where}: expected an integer, got {value!r}")
        try:
            number = int(value, 0) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise ArgsError(f"{where}: expected an integer, got {value!r}") from None
        if isinstance(value, float) and value != number:
            raise ArgsError(f"{where}: expected an integer, got {value!r}")
        if param.minimum is not None and number < param.minimum:
            raise ArgsError(f"{where}: {number} is below the minimum {param.minimum}")
        if param.maximum is not None and number > param.maximum:
            raise ArgsError(f"{where}: {number} is above the maximum {param.maximum}")
        if param.power_of_two and (number <= 0 or number & (number - 1)):
            raise ArgsError(f"{where}: {number} is not a power of two")
        return number
    if param.type == "str":
        if not isinstance(value, str) or not value or "\0" in value or len(value) > 4096:
            raise ArgsError(f"{where}: expected a non-empty text of at most 4096 characters, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ArgsError(f"{where}: expected a process name, got {value!r}")
    raw = value.encode()
    if len(raw) >= COMM_LEN or b"\0" in raw:
        raise ArgsError(f"{where}: {value!r} is not a comm (at most {COMM_LEN - 1} bytes, no NUL)")
    return value


def parse_flags(spec: TracerSpec | BpftraceSpec, argv: list[str]) -> dict[str, Any]:
    """bcc-style flags (``["-p", "42", "-x"]``, or Eunomia's ``["-p 42"]``) → raw values by name.

    Only an item that starts with a known flag followed by more text is split (shell rules);
    a separate value is never split, so it may contain spaces or quotes (``-n``, ``Web Content``).
    """
    by_flag: dict[str, Parameter] = {}
    for param in parameters(spec):
        by_flag[param.long_flag] = param
        if param.flag:
            by_flag[param.flag] = param
    tokens: list[str] = []
    for item in map(str, argv):
        head = item.split(None, 1)[0] if item.strip() else ""
        if head in by_flag and head != item.strip():  # Eunomia's ["-p 42"]: a small command line
            try:
                tokens += shlex.split(item)
            except ValueError as exc:
                raise ArgsError(f"cannot parse {item!r}: {exc}") from None
        else:
            tokens.append(item)
    values: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        param = by_flag.get(flag)
        if param is None:
            _not_for_bpftrace(spec, {flag.removeprefix("--")})
            known = ", ".join(sorted(by_flag))
            raise ArgsError(f"unknown option {flag!r} for tracer {spec.name} (known: {known})")
        if param.type == "bool" and not eq:
            values[param.name] = True
            i += 1
            continue
        if eq:
            values[param.name] = inline
            i += 1
            continue
        if i + 1 >= len(tokens):
            raise ArgsError(f"option {flag} ({param.name}) needs a value")
        values[param.name] = tokens[i + 1]
        i += 2
    return values


def resolve(spec: TracerSpec | BpftraceSpec, given: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """Validated values for every parameter, defaults filled in."""
    raw = parse_flags(spec, given) if isinstance(given, list) else dict(given or {})
    known = {p.name: p for p in parameters(spec)}
    unknown = sorted(set(raw) - set(known))
    _not_for_bpftrace(spec, set(unknown))
    if unknown:
        raise ArgsError(f"unknown parameter(s) {unknown} for tracer {spec.name} (known: {sorted(known)})")
    values: dict[str, Any] = {}
    for name, param in known.items():
        if name in raw and raw[name] is not None:
            values[name] = _coerce(param, raw[name])
        elif param.required:
            hint = f" ({param.flag or param.long_flag})" if isinstance(given, list) else ""
            raise ArgsError(f"parameter {name!r}{hint} is required: {param.description}")
        elif param.default is not None:
            values[name] = _coerce(param, param.default)
        else:
            values[name] = False if param.type == "bool" else 0 if param.type == "int" else ""  # str: unused
    cgroup_filter_mode(values)
    return values


def cgroup_filter_mode(values: dict[str, Any]) -> int:
    """0 (no cgroup filter), FILTER_INCLUDE or FILTER_EXCLUDE (--host); rejects combinations
    that cannot mean anything."""
    chosen = [name for name in CGROUP_SELECTORS if values.get(name)]
    if values.get("host"):
        if chosen:
            raise ArgsError(f"--host (host processes only) cannot be combined with --{chosen[0]}")
        return FILTER_EXCLUDE
    if values.get("cgroup") and len(chosen) > 1:
        other = next(name for name in chosen if name != "cgroup")
        raise ArgsError(f"--cgroup names a cgroup directly: it cannot be combined with --{other}")
    return FILTER_INCLUDE if chosen else 0


def positional(spec: BpftraceSpec, values: dict[str, Any]) -> list[str]:
    """A bpftrace tracer's own parameters as its positional parameters, in the order listed ($1 first)."""
    out = []
    for param in spec.parameters:
        value = values[param.name]
        out.append(str(int(value)) if param.type in ("int", "bool") else str(value))
    return out


def pack_comm(comm: str) -> tuple[int, int]:
    """A comm as the two little-endian u64 words the kernel's NUL-padded comm[16] holds."""
    raw = comm.encode().ljust(COMM_LEN, b"\0")
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def defines(spec: TracerSpec | BpftraceSpec, values: dict[str, Any]) -> list[str]:
    """``-D`` flags for the compiler; every value is a number."""
    flags = []
    for param in parameters(spec):
        value = values[param.name]
        if param.define is None:  # str parameters stay in user space
            continue
        if param.type == "comm":
            lo, hi = pack_comm(value)
            flags += [f"-D{param.define}_SET={int(bool(value))}",
                      f"-D{param.define}_LO={lo:#x}ULL", f"-D{param.define}_HI={hi:#x}ULL"]
        else:
            flags.append(f"-D{param.define}={int(value)}")
    flags.append(f"-DEUNOMIA_FILTER_CGROUP={cgroup_filter_mode(values)}")
    return flags
