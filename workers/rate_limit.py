"""A token bucket for a worker's events: at most ``rate`` per second, bursts up to ``burst``.

The worker asks for its allowance before reading the ring buffer and spends from it per
record, so a record over the limit costs a counter increment and nothing else (it is never
copied, decoded or given to the hook).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()

    def available(self) -> int:
        """Refill for the time since the last call; the whole tokens there are now."""
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        return int(self.tokens)

    def spend(self, n: int) -> None:
        self.tokens -= n
