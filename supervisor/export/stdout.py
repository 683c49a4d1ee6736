"""``stdout``: JSON lines of the instance's events and samples on the agent's standard output
(the journal, under systemd)."""

from __future__ import annotations

import sys
import threading
from typing import BinaryIO

from supervisor.export.args import HandlerOptions, parse_options
from supervisor.export.base import HandlerArgs, HandlerStats
from supervisor.export.jsonlines import JsonLinesHandler, Lines

#: Handlers of several instances share the one stdout: whole batches, never interleaved lines.
_STDOUT_LOCK = threading.Lock()


class StdoutOptions(HandlerOptions):
    events: bool = True
    samples: bool = True


class StdoutHandler(JsonLinesHandler):
    def __init__(self, options: StdoutOptions, stream: BinaryIO | None = None) -> None:
        self.options = options
        self.stream = stream if stream is not None else sys.stdout.buffer
        self._stats = HandlerStats()

    @classmethod
    def create(cls, args: HandlerArgs) -> StdoutHandler:
        return cls(parse_options("stdout", StdoutOptions, args))

    def _write(self, lines: Lines, batch: object) -> None:
        with _STDOUT_LOCK:
            self.stream.write(lines.data)
            self.stream.flush()

    def close(self) -> None:
        pass

    @property
    def stats(self) -> HandlerStats:
        return self._stats
