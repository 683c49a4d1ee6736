"""Tell systemd how the agent is doing: READY=1, STATUS= lines, WATCHDOG=1 pings and STOPPING=1.

The pings come from a task on the supervisor's own asyncio loop, so a loop that hangs
stops pinging and systemd (``WatchdogSec=``) kills and restarts the agent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from supervisor.systemd_notify import Notifier

TICK = 0.25  # how often the task looks at the supervisor's state (status changes, shutdown)


class SupervisorView(Protocol):
    """What the reporter reads from the supervisor."""

    @property
    def shutdown_requested(self) -> bool: ...

    def summary(self) -> dict: ...


def describe(summary: dict) -> str:
    """One status line, e.g. ``3 tracers: 2 running, 1 backoff``."""
    states: dict[str, int] = summary.get("states", {})
    total = summary.get("instances", 0)
    order = ("running", "starting", "backoff", "fatal", "stopping", "stopped")
    parts = [f"{states[s]} {s}" for s in order if states.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(states.items()) if s not in order and n]
    text = f"{total} tracer{'s' if total != 1 else ''}"
    return f"{text}: {', '.join(parts)}" if parts else text


class ServiceReporter:
    def __init__(self, notifier: Notifier, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.clock = clock
        self.supervisor: SupervisorView | None = None
        self.ready_sent = False
        self.stopping_sent = False
        self.pings = 0
        self._last_status: str | None = None

    def status_text(self) -> str:
        if self.supervisor is None:
            return "starting"
        text = describe(self.supervisor.summary())
        return text if self.ready_sent or self.stopping_sent else f"starting; {text}"

    def ready(self) -> None:
        """The supervisor's on_ready: every default tracer has attached or failed its first attempt."""
        if self.ready_sent or self.stopping_sent:
            return
        self.ready_sent = True
        self._last_status = self.status_text()
        self.notifier.ready(self._last_status)

    def stopping(self) -> None:
        if not self.stopping_sent:
            self.stopping_sent = True
            self._last_status = "stopping"
            self.notifier.stopping("stopping: stopping the tracers")

    def step(self, now: float, next_ping: float) -> float:
        """One look at the state; returns when the next watchdog ping is due."""
        if self.supervisor is not None and self.supervisor.shutdown_requested:
            self.stopping()
        elif not self.stopping_sent:
            text = self.status_text()
            if text != self._last_status:
                self._last_status = text
                self.notifier.status(text)
        interval = self.notifier.watchdog_interval
        if interval is not None and now >= next_ping:
            self.notifier.watchdog()
            self.pings += 1
            next_ping = now + interval
        return next_ping

    async def run(self) -> None:
        """Until cancelled (at the very end of the supervisor's shutdown, so pings go on while it stops)."""
        if not self.notifier.enabled:
            return
        next_ping = self.clock()
        interval = self.notifier.watchdog_interval
        tick = min(TICK, interval) if interval else TICK
        while True:
            next_ping = self.step(self.clock(), next_ping)
            await asyncio.sleep(tick)
