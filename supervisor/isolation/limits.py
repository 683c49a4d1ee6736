"""The limits an untrusted tracer's worker runs under, and how an operator writes them.

Written as ``KEY=VALUE`` (``eunomiactl run --custom-limit memory=128M``):

=================  =======================================================  ==========
key                meaning                                                  default
=================  =======================================================  ==========
``memory``         memory of the worker, BPF maps included (K/M/G suffixes)  256M
``cpu``            CPUs' worth of time the worker may use (0.5 = half one)   0.5
``event-rate``     events per second taken from the ring buffer             10000
``event-burst``    events allowed at once above the rate                    20000
``bpf-budget``     ms of BPF program run time per second of wall time       100
``bpf-window``     seconds that BPF time is averaged over                   5
``user``           user the worker switches to after attaching              nobody
``drop-privileges``  yes/no: no capabilities and no_new_privs after attach  yes
``cgroups``        yes/no: use cgroups where available (no: rlimits only)    yes
=================  =======================================================  ==========

``none`` (or 0) turns a numeric limit off.
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True, slots=True)
class IsolationLimits:
    memory_bytes: int = 256 << 20
    cpu: float = 0.5
    event_rate: float = 10_000.0
    event_burst: int = 20_000
    bpf_budget_ms: float = 100.0  # per second of wall time, all CPUs together
    bpf_window: float = 5.0
    user: str = "nobody"  # never root: uid 0 owns root's files even without capabilities
    drop_privileges: bool = True
    cgroups: bool = True  # False: the rlimit fallback even where cgroup controllers exist

    def ids(self) -> tuple[int, int]:
        """The uid and gid to switch to (KeyError: no such user)."""
        entry = pwd.getpwnam(self.user)
        return entry.pw_uid, entry.pw_gid

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: No limits at all: how trusted (built-in) tracers run unless configured otherwise.
UNLIMITED = IsolationLimits(memory_bytes=0, cpu=0.0, event_rate=0.0, event_burst=0, bpf_budget_ms=0.0,
                            drop_privileges=False)


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 256M, 1G, 65536)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _number(text: str, minimum: float = 0.0) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if value < minimum:
        raise ValueError(f"{text!r} is below {minimum:g}")
    return value


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("yes", "true", "1", "on"):
        return True
    if lowered in ("no", "false", "0", "off"):
        return False
    raise ValueError(f"{text!r} is not yes or no")


def _user(text: str) -> str:
    try:
        uid = pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ValueError(f"no user named {text!r} on this host") from None
    if uid == 0:
        # Capabilities are per thread and only a uid change clears them in every thread at once
        # (glibc applies set*id to all threads); and uid 0 owns root's files without any capability.
        raise ValueError(f"{text!r} is root; the worker must become another user (drop-privileges=no keeps root "
                         "with all its privileges)")
    return text


_KEYS: dict[str, tuple[str, Any]] = {
    "memory": ("memory_bytes", parse_size),
    "cpu": ("cpu", _number),
    "event-rate": ("event_rate", _number),
    "event-burst": ("event_burst", lambda t: int(_number(t, 1))),
    "bpf-budget": ("bpf_budget_ms", _number),
    "bpf-window": ("bpf_window", lambda t: _number(t, 1)),
    "user": ("user", _user),
    "drop-privileges": ("drop_privileges", _bool),
    "cgroups": ("cgroups", _bool),
}
_OFF = {"memory_bytes": 0, "cpu": 0.0, "event_rate": 0.0, "bpf_budget_ms": 0.0}


def parse_limits(items: list[str], base: IsolationLimits | None = None) -> IsolationLimits:
    """Apply ``KEY=VALUE`` items to ``base``; ValueError names the item and what is wrong."""
    limits = base or IsolationLimits()
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _KEYS:
            raise ValueError(f"limit {item!r}: expected KEY=VALUE with KEY one of {', '.join(_KEYS)}")
        name, convert = _KEYS[key]
        value = value.strip()
        try:
            converted = _OFF[name] if value.lower() == "none" and name in _OFF else convert(value)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"limit {key}: {exc}") from None
        limits = replace(limits, **{name: converted})
    return limits


@dataclass(frozen=True, slots=True)
class IsolationConfig:
    """Limits for untrusted tracers, and (None by default) for the trusted built-in ones."""

    custom: IsolationLimits = field(default_factory=IsolationLimits)
    builtin: IsolationLimits | None = None

    def for_tracer(self, builtin: bool) -> IsolationLimits | None:
        return self.builtin if builtin else self.custom
