"""``file``: JSON lines in a file, rotated by size (``path`` → ``path.1`` … ``path.<keep>``).

Writes are all-or-nothing per chunk: when a write fails (disk full, path unwritable) the
file is cut back to where the chunk began and the error goes up to the buffered wrapper,
which retries the same batch later; lines of a batch already written before a rotation are
remembered, so a retry neither loses nor repeats a line.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from pathlib import Path

from pydantic import ByteSize, Field, field_validator

from supervisor.export.args import HandlerOptions, parse_options
from supervisor.export.base import HandlerArgs, HandlerStats
from supervisor.export.jsonlines import JsonLinesHandler, Lines


class FileOptions(HandlerOptions):
    positional = ("path",)

    path: str = Field(description="absolute path of the file; its folder is created when missing")
    max_bytes: ByteSize = Field(ByteSize(64 << 20), ge=1, description="rotate before the file grows past this "
                                "(a number of bytes, or with a unit: 512KiB, 64MiB, 1GB)")
    keep: int = Field(5, ge=0, le=1000, description="rotated files kept: path.1 (newest) … path.<keep>")
    events: bool = True
    samples: bool = True

    @field_validator("path")
    @classmethod
    def _absolute_file(cls, value: str) -> str:
        path = Path(value)
        if not path.is_absolute():
            raise ValueError(f"{value!r} is not an absolute path")
        if value.endswith("/") or path.is_dir():
            raise ValueError(f"{value!r} is a directory, not a file")
        return value


class RotatingFile:
    """Appends lines to ``path``, rotating by size; owned by one thread."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        self.size = 0
        self._fd: int | None = None
        self._ino: int | None = None
        self._progress: tuple[int, int] | None = None  # (batch key, lines already written) after a failure

    def write(self, lines: Lines, key: int) -> None:
        """Write every line; ``key`` identifies the batch across retries."""
        i = self._progress[1] if self._progress is not None and self._progress[0] == key else 0
        self._progress = None
        try:
            while i < len(lines):
                self._ensure_open()
                limit = lines.start(i) + self.max_bytes - self.size  # the buffer offset where this file is full
                j = bisect.bisect_right(lines.ends, limit, lo=i)
                if j == i and self.size == 0:
                    j = i + 1  # a line longer than max_bytes goes alone into a fresh file
                if j == i:
                    self._rotate()
                    continue
                self._append(memoryview(lines.data)[lines.start(i):lines.ends[j - 1]])
                i = j
        except BaseException:
            self._progress = (key, i)
            raise

    def _ensure_open(self) -> None:
        if self._fd is not None:
            try:
                if os.stat(self.path).st_ino == self._ino:
                    return
            except FileNotFoundError:
                pass
            self.close()  # moved or removed behind our back: start a new file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        self._fd, self._ino, self.size = fd, st.st_ino, st.st_size

    def _append(self, data: memoryview) -> None:
        assert self._fd is not None
        start = self.size
        view = data
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)  # no half line stays behind; the retry writes it whole
            raise
        self.size = start + len(data)

    def _rotate(self) -> None:
        self.close()
        if self.keep == 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        else:
            for k in range(self.keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}.{k}", f"{self.path}.{k + 1}")
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, f"{self.path}.1")
        self.rotations += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._ino = None
            self.size = 0


class FileHandler(JsonLinesHandler):
    def __init__(self, options: FileOptions) -> None:
        self.options = options
        self.file = RotatingFile(Path(options.path), int(options.max_bytes), options.keep)

    @classmethod
    def create(cls, args: HandlerArgs) -> FileHandler:
        return cls(parse_options("file", FileOptions, args))

    @property
    def claim(self) -> str:
        """Only one handler may write a given file."""
        return f"the file {os.path.realpath(self.options.path)}"

    def _write(self, lines: Lines, batch: object) -> None:
        self.file.write(lines, id(batch))

    def close(self) -> None:
        self.file.close()

    @property
    def stats(self) -> HandlerStats:
        return HandlerStats(detail={"path": str(self.file.path), "bytes": self.file.size,
                                    "rotations": self.file.rotations})
