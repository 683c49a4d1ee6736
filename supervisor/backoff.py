"""When to restart a crashed worker, and when to give up on it.

Exponential backoff with jitter (about 1 s doubling up to 60 s) so that many
workers failing together do not restart in lockstep; a worker that crashes
``max_crashes`` times within ``window`` seconds is declared fatal.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2  # ± this fraction of the delay
    max_crashes: int = 5
    window: float = 60.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum):
            raise ValueError("backoff: need 0 < initial <= maximum")
        if self.factor < 1:
            raise ValueError("backoff: factor must be >= 1")
        if not (0 <= self.jitter < 1):
            raise ValueError("backoff: jitter must be in [0, 1)")
        if self.max_crashes < 1 or self.window <= 0:
            raise ValueError("backoff: max_crashes >= 1 and window > 0 are required")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Delay before restart number ``attempt`` (1-based), jitter included."""
        steps = max(0, attempt - 1)
        # the cap is reached long before the power could overflow a float
        base = self.maximum if steps > 1024 else min(self.maximum, self.initial * self.factor**steps)
        spread = base * self.jitter * (2 * rand() - 1)
        return max(0.0, min(self.maximum * (1 + self.jitter), base + spread))


@dataclass(slots=True)
class CrashHistory:
    """Crash times of one worker, to apply the policy's window."""

    policy: BackoffPolicy
    times: deque[float] = field(default_factory=deque)
    consecutive: int = 0

    def record(self, now: float) -> None:
        self.times.append(now)
        self.consecutive += 1
        while self.times and now - self.times[0] > self.policy.window:
            self.times.popleft()

    def exhausted(self) -> bool:
        return len(self.times) >= self.policy.max_crashes

    def next_delay(self, rand: Callable[[], float] = random.random) -> float:
        return self.policy.delay(self.consecutive, rand)

    def reset_streak(self) -> None:
        """A worker that ran long enough forgets its streak (not its window)."""
        self.consecutive = 0
