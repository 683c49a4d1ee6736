"""The private runtime directory that holds the IPC endpoints (and the API socket).

Mode 0700 and owned by us: nobody else may connect to a worker channel or plant a
socket in our place.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


class RuntimeDirError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Endpoints:
    """ZeroMQ addresses inside one runtime directory."""

    events: str
    control: str

    @classmethod
    def in_dir(cls, runtime_dir: Path) -> Endpoints:
        return cls(events=f"ipc://{runtime_dir / 'events.sock'}", control=f"ipc://{runtime_dir / 'control.sock'}")


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or check and tighten an existing one."""
    path = Path(path)
    old_umask = os.umask(0o077)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    finally:
        os.umask(old_umask)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"runtime directory {path} is not a plain directory")
    if st.st_uid != os.geteuid():
        raise RuntimeDirError(f"runtime directory {path} belongs to uid {st.st_uid}, not to us ({os.geteuid()})")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path
