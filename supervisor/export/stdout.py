"""``stdout``: JSON lines of the instance's events and samples on the agent's standard output
(the journal, under systemd)."""

from __future__ import annotations

import sys
import threading
from typing import Any, BinaryIO

from supervisor.export.args import HandlerOptions, parse_options
from supervisor.export.base import HandlerArgs, HandlerStats
from supervisor.export.jsonlines import Lines, event_lines, sample_lines
from supervisor.sinks import Sample

#: Handlers of several instances share the one stdout: whole batches, never interleaved lines.
_STDOUT_LOCK = threading.Lock()


class StdoutOptions(HandlerOptions):
    events: bool = True
    samples: bool = True


class StdoutHandler:
    def __init__(self, options: StdoutOptions, stream: BinaryIO | None = None) -> None:
        self.options = options
        self.stream = stream if stream is not None else sys.stdout.buffer
        self._stats = HandlerStats()

    @classmethod
    def create(cls, args: HandlerArgs) -> StdoutHandler:
        return cls(parse_options("stdout", StdoutOptions, args))

    def _write(self, lines: Lines) -> None:
        with _STDOUT_LOCK:
            self.stream.write(lines.data)
            self.stream.flush()

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.options.events:
            self._write(event_lines(instance, tracer, columns, rows))

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None:
        if self.options.samples:
            self._write(sample_lines(instance, ts, samples))

    @property
    def takes_events(self) -> bool:
        return self.options.events

    @property
    def takes_samples(self) -> bool:
        return self.options.samples

    def dropped(self, instance: str) -> int:
        return 0

    def close(self) -> None:
        pass

    @property
    def stats(self) -> HandlerStats:
        return self._stats
