"""supervisor.backoff: restart delays and the crash window."""

from __future__ import annotations

import random

import pytest

from supervisor.backoff import BackoffPolicy, CrashHistory


def mid() -> float:
    return 0.5  # 2*0.5 - 1 == 0: no jitter


def low() -> float:
    return 0.0


def high() -> float:
    return 0.999


# ---------------------------------------------------------------- BackoffPolicy


def test_defaults():
    p = BackoffPolicy()
    assert (p.initial, p.maximum, p.factor, p.jitter, p.max_crashes, p.window) == (1.0, 60.0, 2.0, 0.2, 5, 60.0)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 32.0), (7, 60.0), (8, 60.0), (50, 60.0)],
)
def test_exponential_then_capped(attempt: int, expected: float):
    assert BackoffPolicy().delay(attempt, mid) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_attempt_below_one_uses_initial(attempt: int):
    assert BackoffPolicy().delay(attempt, mid) == pytest.approx(1.0)


def test_custom_initial_and_factor():
    p = BackoffPolicy(initial=0.5, maximum=10.0, factor=3.0, jitter=0.0)
    assert [p.delay(n, mid) for n in range(1, 6)] == pytest.approx([0.5, 1.5, 4.5, 10.0, 10.0])


def test_factor_one_is_constant():
    p = BackoffPolicy(initial=3.0, maximum=10.0, factor=1.0, jitter=0.0)
    assert {p.delay(n, random.random) for n in range(1, 20)} == {3.0}


@pytest.mark.parametrize("attempt", [1, 3, 6, 7, 20])
def test_jitter_bounds(attempt: int):
    p = BackoffPolicy(jitter=0.2)
    base = p.delay(attempt, mid)
    lo = p.delay(attempt, low)
    hi = p.delay(attempt, high)
    assert lo == pytest.approx(base * 0.8)
    assert hi == pytest.approx(base * (1 + 0.2 * 0.998))
    assert lo < base < hi
    assert hi <= p.maximum * (1 + p.jitter)


def test_jitter_bounds_random_sampling():
    p = BackoffPolicy(jitter=0.3)
    rng = random.Random(1234)
    for attempt in range(1, 12):
        base = min(p.maximum, p.initial * p.factor ** (attempt - 1))
        for _ in range(50):
            d = p.delay(attempt, rng.random)
            assert base * 0.7 - 1e-9 <= d < base * 1.3 + 1e-9
            assert 0.0 <= d <= p.maximum * 1.3


def test_zero_jitter_ignores_rand():
    p = BackoffPolicy(jitter=0.0)
    assert p.delay(3, low) == p.delay(3, high) == 4.0


def test_delay_uses_random_by_default():
    p = BackoffPolicy()
    random.seed(7)
    d = p.delay(2)
    assert 1.6 <= d <= 2.4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": -1},
        {"initial": 10, "maximum": 5},
        {"factor": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.0},
        {"jitter": 1.5},
        {"max_crashes": 0},
        {"window": 0},
        {"window": -5},
    ],
)
def test_invalid_policies(kwargs):
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


def test_policy_is_frozen():
    p = BackoffPolicy()
    with pytest.raises((AttributeError, TypeError)):
        p.initial = 5  # type: ignore[misc]


def test_initial_equal_to_maximum_is_valid():
    p = BackoffPolicy(initial=5.0, maximum=5.0, jitter=0.0)
    assert p.delay(1, mid) == p.delay(10, mid) == 5.0


def test_delay_after_very_many_attempts_is_capped():
    assert BackoffPolicy().delay(1100, mid) == pytest.approx(60.0)


def test_next_delay_after_a_long_streak_of_spread_out_crashes():
    h = CrashHistory(BackoffPolicy())
    for i in range(1100):
        h.record(i * 61.0)  # one crash a minute and a bit: never 5 in 60 s
    assert not h.exhausted()
    assert h.next_delay(mid) == pytest.approx(60.0)


# ---------------------------------------------------------------- CrashHistory


def test_empty_history():
    h = CrashHistory(BackoffPolicy())
    assert not h.exhausted()
    assert h.consecutive == 0
    assert len(h.times) == 0


def test_exhausted_after_max_crashes_within_window():
    h = CrashHistory(BackoffPolicy(max_crashes=5, window=60.0))
    for i, now in enumerate([0.0, 10.0, 20.0, 30.0]):
        h.record(now)
        assert not h.exhausted(), i
    h.record(40.0)
    assert h.exhausted()


def test_exhausted_at_exact_window_edge():
    # A crash exactly `window` seconds ago still counts (pruning uses a strict >).
    h = CrashHistory(BackoffPolicy(max_crashes=3, window=60.0))
    for now in (0.0, 30.0, 60.0):
        h.record(now)
    assert list(h.times) == [0.0, 30.0, 60.0]
    assert h.exhausted()


def test_not_exhausted_when_spread_over_more_than_window():
    h = CrashHistory(BackoffPolicy(max_crashes=5, window=60.0))
    for now in (0.0, 16.0, 32.0, 48.0, 64.0, 80.0, 96.0, 112.0):
        h.record(now)
        assert not h.exhausted(), now
    assert h.consecutive == 8
    assert list(h.times) == [64.0, 80.0, 96.0, 112.0]


def test_window_pruning():
    h = CrashHistory(BackoffPolicy(max_crashes=10, window=60.0))
    h.record(0.0)
    h.record(50.0)
    h.record(55.0)
    assert list(h.times) == [0.0, 50.0, 55.0]
    h.record(60.5)
    assert list(h.times) == [50.0, 55.0, 60.5]
    h.record(200.0)
    assert list(h.times) == [200.0]
    assert h.consecutive == 5


def test_burst_after_quiet_period_exhausts():
    h = CrashHistory(BackoffPolicy(max_crashes=3, window=10.0))
    h.record(0.0)
    h.record(100.0)
    assert not h.exhausted()
    h.record(105.0)
    assert not h.exhausted()
    h.record(109.0)
    assert h.exhausted()
    assert list(h.times) == [100.0, 105.0, 109.0]


def test_next_delay_grows_with_consecutive_crashes():
    h = CrashHistory(BackoffPolicy())
    delays = []
    for i in range(8):
        h.record(i * 1000.0)
        delays.append(h.next_delay(mid))
    assert delays == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0])


def test_next_delay_before_any_crash():
    assert CrashHistory(BackoffPolicy()).next_delay(mid) == pytest.approx(1.0)


def test_reset_streak_keeps_window():
    h = CrashHistory(BackoffPolicy(max_crashes=3, window=60.0))
    h.record(0.0)
    h.record(1.0)
    h.record(2.0)
    assert h.exhausted()
    assert h.next_delay(mid) == pytest.approx(4.0)
    h.reset_streak()
    assert h.consecutive == 0
    assert h.exhausted()  # the window is not forgotten
    assert list(h.times) == [0.0, 1.0, 2.0]
    assert h.next_delay(mid) == pytest.approx(1.0)
    h.record(3.0)
    assert h.consecutive == 1
    assert h.next_delay(mid) == pytest.approx(1.0)


def test_histories_do_not_share_state():
    p = BackoffPolicy()
    a, b = CrashHistory(p), CrashHistory(p)
    a.record(1.0)
    assert len(b.times) == 0 and b.consecutive == 0
