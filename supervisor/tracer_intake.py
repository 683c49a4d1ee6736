"""Bring a user's tracer folder into the agent's own storage, safely.

A tracer added at run time is copied (from a host path) or extracted (from an uploaded
archive) into a private directory of the agent before anything reads it, so that the
files that are validated, digested and allow-listed are exactly the files that run, and
nobody can change them afterwards. Only plain files and directories are taken: absolute
names, ``..``, links of any kind, devices and FIFOs are refused, and sizes and counts are
bounded. Python byte-code caches are left out (they would run code the digest does not
cover).
"""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from workers.folder_digest import is_cache
from workers.spec import SPEC_FILE

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class IntakeError(ValueError):
    """The folder or archive is not acceptable; the message says which entry and why."""


class TooLarge(IntakeError):
    """A size or count limit was exceeded."""


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    max_archive_bytes: int = 8 << 20  # the upload itself (compressed)
    max_total_bytes: int = 16 << 20  # all files, uncompressed
    max_file_bytes: int = 4 << 20
    max_files: int = 256  # files and directories


class _Budget:
    def __init__(self, limits: IntakeLimits) -> None:
        self.limits = limits
        self.entries = 0
        self.bytes = 0

    def entry(self, name: str) -> None:
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise TooLarge(f"more than {self.limits.max_files} files and directories (at {name!r})")

    def file(self, name: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise TooLarge(f"{name!r} is {size} bytes; the limit per file is {self.limits.max_file_bytes}")
        self.bytes += size
        if self.bytes > self.limits.max_total_bytes:
            raise TooLarge(f"more than {self.limits.max_total_bytes} bytes in all (at {name!r})")


def _safe_relative(name: str) -> str:
    """The member name as a relative POSIX path, or IntakeError."""
    if not name or "\0" in name or "\\" in name:
        raise IntakeError(f"entry {name!r}: not an acceptable file name")
    if name.startswith("/"):
        raise IntakeError(f"entry {name!r}: absolute paths are not allowed")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise IntakeError(f"entry {name!r}: '..' is not allowed")
    return "/".join(parts)


def _private_mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_new(path: Path, data: bytes) -> None:
    _private_mkdir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _tracer_root(names: list[str]) -> str:
    """The prefix under which ``tracer.yaml`` sits: the top, or the one top-level folder."""
    if SPEC_FILE in names:
        return ""
    tops = {n.split("/")[0] for n in names}
    if len(tops) == 1:
        (top,) = tops
        if f"{top}/{SPEC_FILE}" in names:
            return top + "/"
    raise IntakeError(f"no {SPEC_FILE} at the top of the archive or of its one top-level folder")


def extract_archive(data: bytes, dest: Path, limits: IntakeLimits = IntakeLimits()) -> None:
    """Extract a (compressed) tar of one tracer folder into the new directory ``dest``."""
    if len(data) > limits.max_archive_bytes:
        raise TooLarge(f"the archive is {len(data)} bytes; the limit is {limits.max_archive_bytes}")
    budget = _Budget(limits)
    members: list[tuple[str, tarfile.TarInfo]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            while (member := tar.next()) is not None:  # headers only; bounded before any content is read
                relative = _safe_relative(member.name)
                budget.entry(member.name)
                if member.isdir():
                    continue
                if not member.isreg() or member.issparse():
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                    raise IntakeError(f"entry {member.name!r}: {kind}; only plain files and folders are accepted")
                budget.file(member.name, member.size)
                if relative and not is_cache(relative):
                    members.append((relative, member))
            prefix = _tracer_root([name for name, _ in members])
            for relative, member in members:
                if not relative.startswith(prefix):
                    raise IntakeError(f"entry {member.name!r} is outside the tracer folder {prefix.rstrip('/')!r}")
                source = tar.extractfile(member)
                assert source is not None
                content = source.read(limits.max_file_bytes + 1)
                if len(content) != member.size:
                    raise IntakeError(f"entry {member.name!r}: truncated archive")
                _write_new(dest / relative.removeprefix(prefix), content)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileExistsError):
            raise IntakeError(f"the archive holds {exc.filename!r} twice") from None
        raise IntakeError(f"not a readable tar archive: {exc}") from None
    _private_mkdir(dest)


def copy_folder(source: Path, dest: Path, limits: IntakeLimits = IntakeLimits()) -> None:
    """Copy a tracer folder on this host into the new directory ``dest``, taking plain files only."""
    budget = _Budget(limits)
    source_fd_stat = os.lstat(source)
    if not stat.S_ISDIR(source_fd_stat.st_mode):
        raise IntakeError(f"{source} is not a directory")
    for root, dirs, files in os.walk(source):
        base = Path(root)
        for name in sorted(dirs + files):
            path = base / name
            relative = path.relative_to(source).as_posix()
            st = os.lstat(path)
            if is_cache(relative):
                if name in dirs:
                    dirs.remove(name)
                continue
            budget.entry(relative)
            if stat.S_ISLNK(st.st_mode):
                raise IntakeError(f"{path}: a symbolic link; only plain files and folders are accepted")
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise IntakeError(f"{path}: not a regular file; only plain files and folders are accepted")
            budget.file(relative, st.st_size)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as fh:
                content = fh.read(limits.max_file_bytes + 1)
            budget.file(relative, len(content) - st.st_size)  # it grew while we read it
            _write_new(dest / relative, content)
    _private_mkdir(dest)


def spec_name(folder: Path) -> str:
    """The ``name`` its tracer.yaml claims, checked to be a plain identifier (the folder is renamed to it)."""
    try:
        data = yaml.safe_load((folder / SPEC_FILE).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise IntakeError(f"no {SPEC_FILE} in the tracer folder") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise IntakeError(f"{SPEC_FILE}: not valid YAML: {exc}") from None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not _NAME.match(name):
        raise IntakeError(f"{SPEC_FILE}: name: {name!r} must match {_NAME.pattern}")
    return name
