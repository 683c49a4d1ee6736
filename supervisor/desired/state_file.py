"""The agent's desired state on disk (``desired.json`` next to the store, mode 0600).

Written atomically after every change (a temporary file in the same directory, fsync, rename,
fsync of the directory), so that a crash or ``kill -9`` at any moment leaves either the old
or the new state, never a mix. A file that cannot be used (not JSON, wrong shape, not the
agent's, writable by others) is moved aside as ``desired.json.corrupt-<time>`` and reported;
the agent then starts from its configuration.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.desired.document import FORMAT_VERSION, DesiredInstance, DocumentError, parse

STATE_FILE_NAME = "desired.json"


@dataclass(slots=True)
class SavedState:
    instances: list[DesiredInstance]
    #: the configured tracers (file or flags) at the last start: what a change of the configuration is found by
    configured: list[DesiredInstance] = field(default_factory=list)


@dataclass(slots=True)
class LoadResult:
    saved: SavedState | None  # None: no usable file (first start, or a bad one)
    problem: str | None = None  # why the file was not used
    moved_to: Path | None = None  # where the bad file was kept


class StateFile:
    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.writable = True  # False when a bad file could not be moved aside: never overwrite it

    def load(self) -> LoadResult:
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):  # a save cut short by a crash
            with contextlib.suppress(OSError):
                stale.unlink()
        try:
            raw = self._read()
        except (FileNotFoundError, NotADirectoryError):  # nothing there to keep
            return LoadResult(None)
        except (OSError, ValueError) as exc:
            return self._refuse(str(exc))
        try:
            return LoadResult(decode(raw))
        except ValueError as exc:
            return self._refuse(str(exc))

    def _read(self) -> bytes:
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if st.st_uid != os.geteuid():
                raise ValueError(f"owned by uid {st.st_uid}, not by the agent's user (uid {os.geteuid()})")
            if st.st_mode & 0o022:
                raise ValueError(f"mode {stat.S_IMODE(st.st_mode):04o} lets others change it")
            return handle.read()

    def _refuse(self, reason: str) -> LoadResult:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.rename(self.path, target)
        except OSError as exc:
            self.writable = False
            return LoadResult(None, f"{self.path}: {reason}; it could not be moved aside ({exc.strerror}), so it is "
                                    "left as it is and the desired state is not saved until it is fixed or removed")
        os.chmod(target, 0o600)
        return LoadResult(None, f"{self.path}: {reason}; kept as {target}", target)

    def save(self, state: SavedState) -> None:
        """Replace the file atomically. Raises OSError (the previous file is then unchanged)."""
        if not self.writable:
            raise OSError(f"{self.path} is a bad file that could not be moved aside; not overwritten")
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = encode(state, self.clock())
        tmp = directory / f".{self.path.name}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)  # an old temporary file may have had another mode
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)


def encode(state: SavedState, now: float) -> bytes:
    body = {"version": FORMAT_VERSION,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "instances": [i.to_dict() for i in state.instances],
            "configured": [i.to_dict() for i in state.configured]}
    return (json.dumps(body, indent=2) + "\n").encode()


def decode(raw: bytes) -> SavedState:
    """The saved state in ``raw``; ValueError says what is wrong with it."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, not {type(data).__name__}")
    extra = set(data) - {"version", "saved_at", "instances", "configured"}
    if extra:
        raise ValueError(f"unknown key(s) {sorted(extra)}")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"format version {data.get('version')!r}; this agent reads version {FORMAT_VERSION}")
    try:
        instances = parse({"instances": data.get("instances")})
        configured = parse({"instances": data.get("configured", [])})
    except DocumentError as exc:
        raise ValueError(f"not a valid desired state: {exc}") from None
    return SavedState(instances, configured)
