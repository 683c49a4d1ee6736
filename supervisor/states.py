"""Worker states and the transitions allowed between them.

Stdlib only, like supervisor's ``states.py``: every state change goes through
:meth:`StateMachine.to`, which refuses transitions that make no sense instead of
letting a bug silently corrupt what the operator sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class State(StrEnum):
    STARTING = "starting"  # process spawned, probes not yet attached
    RUNNING = "running"  # the worker reported its probes attached
    BACKOFF = "backoff"  # crashed; waiting before the next start
    STOPPING = "stopping"  # asked to stop; waiting for the process to exit
    STOPPED = "stopped"  # no process, by request
    FATAL = "fatal"  # no process, and we gave up: permanent error or too many crashes


ALLOWED: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.RUNNING, State.BACKOFF, State.STOPPING, State.FATAL}),
    State.RUNNING: frozenset({State.BACKOFF, State.STOPPING, State.FATAL}),
    State.BACKOFF: frozenset({State.STARTING, State.STOPPED, State.FATAL}),
    State.STOPPING: frozenset({State.STOPPED}),
    State.FATAL: frozenset({State.STARTING, State.STOPPED}),
}

#: States in which a worker process may exist.
PROCESS_STATES = frozenset({State.STARTING, State.RUNNING, State.STOPPING})


class InvalidTransition(RuntimeError):
    def __init__(self, current: State, target: State) -> None:
        super().__init__(f"cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


class StateMachine:
    """The current state of one worker, with the time it was entered."""

    def __init__(
        self,
        initial: State = State.STOPPED,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State, State], None] | None = None,
    ) -> None:
        self._state = initial
        self._clock = clock
        self._on_change = on_change
        self.since = clock()

    @property
    def state(self) -> State:
        return self._state

    def can(self, target: State) -> bool:
        return target in ALLOWED[self._state]

    def to(self, target: State) -> None:
        if not self.can(target):
            raise InvalidTransition(self._state, target)
        previous, self._state = self._state, target
        self.since = self._clock()
        if self._on_change is not None:
            self._on_change(previous, target)
