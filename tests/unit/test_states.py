"""supervisor.states: the worker state machine and its transition table."""

from __future__ import annotations

import itertools

import pytest

from supervisor.states import ALLOWED, PROCESS_STATES, InvalidTransition, State, StateMachine

ALL_PAIRS = list(itertools.product(State, State))
ALLOWED_PAIRS = [(a, b) for a, b in ALL_PAIRS if b in ALLOWED[a]]


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_table_covers_every_state():
    assert set(ALLOWED) == set(State)
    for targets in ALLOWED.values():
        assert targets <= set(State)


def test_no_self_transitions():
    for state, targets in ALLOWED.items():
        assert state not in targets


def test_expected_allowed_table():
    # The table as documented; a change here should be deliberate.
    expected = {
        State.STOPPED: {State.STARTING},
        State.STARTING: {State.RUNNING, State.BACKOFF, State.STOPPING, State.FATAL},
        State.RUNNING: {State.BACKOFF, State.STOPPING, State.FATAL},
        State.BACKOFF: {State.STARTING, State.STOPPED, State.FATAL},
        State.STOPPING: {State.STOPPED},
        State.FATAL: {State.STARTING, State.STOPPED},
    }
    assert {k: set(v) for k, v in ALLOWED.items()} == expected


def test_process_states():
    assert PROCESS_STATES == {State.STARTING, State.RUNNING, State.STOPPING}


def test_state_values_are_strings():
    assert State.RUNNING == "running"
    assert [s.value for s in State] == ["starting", "running", "backoff", "stopping", "stopped", "fatal"]


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS])
def test_every_pair_allowed_iff_listed(current: State, target: State):
    clock = FakeClock(1.0)
    changes: list[tuple[State, State]] = []
    sm = StateMachine(current, clock=clock, on_change=lambda old, new: changes.append((old, new)))
    assert sm.since == 1.0
    clock.now = 2.0
    allowed = target in ALLOWED[current]
    assert sm.can(target) is allowed
    if allowed:
        sm.to(target)
        assert sm.state is target
        assert sm.since == 2.0
        assert changes == [(current, target)]
    else:
        with pytest.raises(InvalidTransition) as info:
            sm.to(target)
        assert info.value.current is current
        assert info.value.target is target
        assert current.value in str(info.value) and target.value in str(info.value)
        # Nothing changed.
        assert sm.state is current
        assert sm.since == 1.0
        assert changes == []


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (State.STOPPED, State.RUNNING),
        (State.STOPPING, State.RUNNING),
        (State.FATAL, State.RUNNING),
        (State.STOPPED, State.STOPPING),
        (State.BACKOFF, State.RUNNING),
        (State.STOPPING, State.STARTING),
        (State.RUNNING, State.STARTING),
        (State.RUNNING, State.STOPPED),
        (State.RUNNING, State.RUNNING),
    ],
)
def test_representative_forbidden(current: State, target: State):
    sm = StateMachine(current, clock=FakeClock())
    with pytest.raises(InvalidTransition):
        sm.to(target)
    assert sm.state is current


def test_invalid_transition_is_runtime_error():
    assert issubclass(InvalidTransition, RuntimeError)
    exc = InvalidTransition(State.STOPPED, State.RUNNING)
    assert str(exc) == "cannot go from stopped to running"


def test_default_initial_state_is_stopped():
    sm = StateMachine(clock=FakeClock())
    assert sm.state is State.STOPPED


def test_full_lifecycle_with_clock_and_callback():
    clock = FakeClock(10.0)
    seen: list[tuple[State, State, float]] = []
    sm: StateMachine

    def on_change(old: State, new: State) -> None:
        # The callback runs after the state and `since` are updated.
        seen.append((old, new, sm.since))
        assert sm.state is new

    sm = StateMachine(clock=clock, on_change=on_change)
    path = [State.STARTING, State.RUNNING, State.BACKOFF, State.STARTING, State.RUNNING,
            State.FATAL, State.STARTING, State.STOPPING, State.STOPPED]
    for i, target in enumerate(path):
        clock.now = 20.0 + i
        sm.to(target)
    assert sm.state is State.STOPPED
    assert sm.since == 20.0 + len(path) - 1
    previous = [State.STOPPED, *path[:-1]]
    assert seen == [(old, new, 20.0 + i) for i, (old, new) in enumerate(zip(previous, path, strict=True))]


def test_clock_called_once_per_transition():
    calls = []

    def clock() -> float:
        calls.append(1)
        return float(len(calls))

    sm = StateMachine(clock=clock)
    assert sm.since == 1.0
    sm.to(State.STARTING)
    assert sm.since == 2.0
    with pytest.raises(InvalidTransition):
        sm.to(State.STOPPED)
    assert len(calls) == 2  # a refused transition does not read the clock


def test_without_callback():
    sm = StateMachine(State.STARTING, clock=FakeClock())
    sm.to(State.RUNNING)
    assert sm.state is State.RUNNING
