"""Memory and CPU limits for worker processes through cgroups, v2 or v1, whichever the host has.

Each limited instance gets its own group under a group of this agent, ``eunomia-<pid>``,
created below the agent's own cgroup in each hierarchy it uses (so a service manager's
limits on the agent still hold, and several agents on one host never collide). Per
controller, cgroup v2 is used when the agent's cgroup offers it and lets it be delegated
to children; otherwise cgroup v1 when the controller is mounted there; otherwise nothing,
and the caller falls back to rlimits (see :mod:`workers.privileges`).

Kernel memory counts: since Linux 5.11 BPF maps and ring buffers are charged to the memory
cgroup of the process that creates them, and the worker creates them after it was placed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("eunomia.isolation")
CPU_PERIOD_US = 100_000
CONTROLLERS = ("memory", "cpu")


@dataclass(frozen=True, slots=True)
class Mount:
    version: int
    mountpoint: Path
    root: str  # the cgroup path the mount shows as its top
    controllers: frozenset[str]


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields_, after = left.split(), right.split()
        if len(fields_) < 5 or len(after) < 3 or after[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(after[2].split(","))
        version = 2 if after[0] == "cgroup2" else 1
        mounts.append(Mount(version, Path(fields_[4].replace("\\040", " ")), fields_[3],
                            frozenset() if version == 2 else options & set(CONTROLLERS)))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller (or "" for the unified hierarchy) → this process's cgroup path."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            out[""] = parts[2]
        for controller in parts[1].split(","):
            if controller:
                out[controller] = parts[2]
    return out


def _under(mount: Mount, path: str) -> Path:
    relative = os.path.relpath(path, mount.root) if mount.root != "/" else path.lstrip("/")
    return mount.mountpoint if relative in (".", "") else mount.mountpoint / relative


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one controller's instance groups go: the agent's own group in a hierarchy."""

    controller: str
    version: int
    own: Path  # the agent's current cgroup in that hierarchy

    def describe(self) -> str:
        files = {("memory", 1): "memory.limit_in_bytes", ("memory", 2): "memory.max",
                 ("cpu", 1): "cpu.cfs_quota_us", ("cpu", 2): "cpu.max"}
        return f"cgroup v{self.version} {files[(self.controller, self.version)]}"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    except OSError:
        pass
    return out


def find_placements(mountinfo: str, proc_cgroup: str) -> tuple[dict[str, Placement], list[str]]:
    """Per controller, the best hierarchy to use (v2 when offered, else v1), and notes on what is missing."""
    mounts = parse_mountinfo(mountinfo)
    mine = parse_proc_cgroup(proc_cgroup)
    placements: dict[str, Placement] = {}
    notes: list[str] = []
    unified = next((m for m in mounts if m.version == 2), None)
    offered: set[str] = set()
    if unified is not None and "" in mine:
        own = _under(unified, mine[""])
        try:
            offered = set((own / "cgroup.controllers").read_text().split())
        except OSError:
            offered = set()
        for controller in CONTROLLERS:
            if controller in offered:
                placements[controller] = Placement(controller, 2, own)
    for controller in CONTROLLERS:
        if controller in placements:
            continue
        v1 = next((m for m in mounts if m.version == 1 and controller in m.controllers), None)
        if v1 is not None and controller in mine:
            placements[controller] = Placement(controller, 1, _under(v1, mine[controller]))
        else:
            notes.append(f"no {controller} controller in cgroup v2 ({', '.join(sorted(offered)) or 'none offered'}) "
                         "or v1")
    return placements, notes


@dataclass(slots=True)
class InstanceGroup:
    """One instance's cgroups (one directory per hierarchy) and what the kernel says about them."""

    memory: tuple[int, Path] | None = None
    cpu: tuple[int, Path] | None = None
    oom_kills_seen: int = 0

    def dirs(self) -> list[Path]:
        return sorted({d for _, d in filter(None, (self.memory, self.cpu))})

    def place(self, pid: int) -> None:
        for directory in self.dirs():
            _write(directory / "cgroup.procs", str(pid))

    def oom_kills(self) -> int:
        if self.memory is None:
            return 0
        version, directory = self.memory
        name = "memory.events" if version == 2 else "memory.oom_control"
        return _keyed(directory / name).get("oom_kill", 0)

    def usage(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        if self.memory is not None:
            version, directory = self.memory
            if version == 2:
                out["memory_bytes"] = _read_int(directory / "memory.current")
                out["memory_peak_bytes"] = _read_int(directory / "memory.peak")
            else:
                out["memory_bytes"] = _read_int(directory / "memory.usage_in_bytes")
                out["memory_peak_bytes"] = _read_int(directory / "memory.max_usage_in_bytes")
            out["oom_kills"] = self.oom_kills()
        if self.cpu is not None:
            version, directory = self.cpu
            stat = _keyed(directory / "cpu.stat")
            out["cpu_throttled_periods"] = stat.get("nr_throttled")
            throttled = stat.get("throttled_usec") if version == 2 else stat.get("throttled_time")
            if throttled is not None:
                out["cpu_throttled_seconds"] = throttled / (1e6 if version == 2 else 1e9)  # type: ignore[assignment]
        return out

    def remove(self) -> None:
        for directory in self.dirs():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove cgroup %s: %s", directory, exc)


@dataclass(slots=True)
class Cgroups:
    """This agent's cgroups for limited workers; created on first use, removed by :meth:`close`."""

    placements: dict[str, Placement]
    notes: list[str]
    owner_pid: int = field(default_factory=os.getpid)
    _bases: dict[tuple[int, Path], Path] = field(default_factory=dict)

    @classmethod
    def from_host(cls) -> Cgroups:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError as exc:
            return cls({}, [f"cannot read the process's cgroups: {exc}"])
        placements, notes = find_placements(mountinfo, proc_cgroup)
        return cls(placements, notes)

    def mechanism(self, controller: str) -> str | None:
        placement = self.placements.get(controller)
        return placement.describe() if placement else None

    def _base(self, placement: Placement) -> Path:
        """The agent's group in that hierarchy, created (and for v2, delegated) once."""
        key = (placement.version, placement.own)
        if key in self._bases:
            return self._bases[key]
        self._remove_stale(placement.own)
        base = placement.own / f"eunomia-{self.owner_pid}"
        wanted = [c for c, p in self.placements.items() if (p.version, p.own) == key]
        if placement.version == 2:
            enable = " ".join(f"+{c}" for c in wanted)
            try:
                _write(placement.own / "cgroup.subtree_control", enable)
            except OSError as exc:
                hint = " (the agent's cgroup has processes; give it a delegated subtree)" \
                    if exc.errno == errno.EBUSY else ""
                raise OSError(exc.errno, f"cgroup v2: cannot enable {enable} below {placement.own}: "
                                         f"{exc.strerror}{hint}") from None
        base.mkdir(mode=0o755, exist_ok=True)
        if placement.version == 2:
            _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        self._bases[key] = base
        return base

    def _remove_stale(self, own: Path) -> None:
        """Groups of agents that died without cleaning up (kill -9): empty, so rmdir suffices."""
        with contextlib.suppress(OSError):
            for group in own.glob("eunomia-*"):
                pid = group.name.removeprefix("eunomia-")
                if not pid.isdigit() or int(pid) == self.owner_pid or Path(f"/proc/{pid}").exists():
                    continue
                for child in group.iterdir():
                    if child.is_dir():
                        with contextlib.suppress(OSError):
                            child.rmdir()
                with contextlib.suppress(OSError):
                    group.rmdir()

    def create(self, name: str, memory_bytes: int, cpu: float) -> InstanceGroup:
        """An instance's group(s) with the limits written; limits of 0 are left unset (OSError on failure)."""
        group = InstanceGroup()
        dirs: dict[tuple[int, Path], Path] = {}
        for controller, wanted in (("memory", memory_bytes), ("cpu", cpu)):
            placement = self.placements.get(controller)
            if placement is None or not wanted:
                continue
            key = (placement.version, placement.own)
            if key not in dirs:
                dirs[key] = self._base(placement) / name
                dirs[key].mkdir(mode=0o755, exist_ok=True)
            directory = dirs[key]
            if controller == "memory":
                self._limit_memory(placement.version, directory, memory_bytes)
                group.memory = (placement.version, directory)
            else:
                self._limit_cpu(placement.version, directory, cpu)
                group.cpu = (placement.version, directory)
        group.oom_kills_seen = group.oom_kills()
        return group

    @staticmethod
    def _limit_memory(version: int, directory: Path, limit: int) -> None:
        if version == 2:
            _write(directory / "memory.max", str(limit))
            with contextlib.suppress(OSError):
                _write(directory / "memory.swap.max", "0")
        else:
            _write(directory / "memory.limit_in_bytes", str(limit))
            with contextlib.suppress(OSError):  # only with swap accounting
                _write(directory / "memory.memsw.limit_in_bytes", str(limit))

    @staticmethod
    def _limit_cpu(version: int, directory: Path, cpu: float) -> None:
        quota = max(1000, int(cpu * CPU_PERIOD_US))
        if version == 2:
            _write(directory / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        else:
            _write(directory / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(directory / "cpu.cfs_quota_us", str(quota))

    def close(self) -> None:
        """Remove every group this agent made (their processes are gone by now)."""
        for base in self._bases.values():
            for child in sorted(base.glob("*")):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            try:
                base.rmdir()
            except OSError as exc:
                log.warning("cannot remove cgroup %s: %s", base, exc)
        self._bases.clear()
