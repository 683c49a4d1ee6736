"""Isolation limits as the operator writes them, the event-rate bucket and the BPF-time budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.isolation.bpf_stats import BudgetWindow, StatsSwitch, program_stats
from supervisor.isolation.limits import UNLIMITED, IsolationConfig, IsolationLimits, parse_limits, parse_size
from workers.rate_limit import TokenBucket


def test_defaults_are_sane() -> None:
    limits = IsolationLimits()
    assert limits.memory_bytes == 256 << 20 and limits.cpu == 0.5
    assert limits.event_rate == 10_000 and limits.event_burst == 20_000
    assert limits.bpf_budget_ms == 100 and limits.bpf_window == 5
    assert limits.user == "nobody" and limits.drop_privileges
    assert limits.ids()[0] not in (None, 0)


def test_builtin_tracers_are_trusted_unless_configured() -> None:
    config = IsolationConfig()
    assert config.for_tracer(builtin=True) is None
    assert config.for_tracer(builtin=False) == IsolationLimits()
    limited = IsolationConfig(builtin=parse_limits(["memory=1G"], UNLIMITED))
    assert limited.for_tracer(builtin=True) == IsolationLimits(memory_bytes=1 << 30, cpu=0, event_rate=0,
                                                               event_burst=0, bpf_budget_ms=0,
                                                               drop_privileges=False)


@pytest.mark.parametrize(("text", "size"), [("65536", 65536), ("128M", 128 << 20), ("1g", 1 << 30),
                                            ("1.5K", 1536), ("64MiB", 64 << 20), ("2 GB", 2 << 30)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_limits() -> None:
    limits = parse_limits(["memory=128M", "cpu=0.25", "event-rate=none", "event-burst=50", "bpf-budget=20",
                           "bpf-window=2", "user=daemon", "drop-privileges=no"])
    assert limits == IsolationLimits(memory_bytes=128 << 20, cpu=0.25, event_rate=0.0, event_burst=50,
                                     bpf_budget_ms=20.0, bpf_window=2.0, user="daemon", drop_privileges=False)
    assert limits.ids()[0] not in (None, 0)


@pytest.mark.parametrize(("item", "needle"), [
    ("memory", "expected KEY=VALUE"),
    ("colour=red", "expected KEY=VALUE with KEY one of memory"),
    ("memory=lots", "limit memory: 'lots' is not a size"),
    ("cpu=-1", "limit cpu: '-1' is below 0"),
    ("event-burst=0", "limit event-burst: '0' is below 1"),
    ("user=no-such-user-here", "no user named 'no-such-user-here'"),
    ("drop-privileges=maybe", "'maybe' is not yes or no"),
    ("user=root", "'root' is root; the worker must become another user"),
])
def test_bad_limits_name_the_problem(item: str, needle: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_limits([item])
    assert needle in str(caught.value)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=100, burst=10, clock=clock)
    assert bucket.available() == 10  # a full burst to start with
    bucket.spend(10)
    assert bucket.available() == 0
    clock.now = 0.05
    assert bucket.available() == 5
    bucket.spend(5)
    clock.now = 100.0
    assert bucket.available() == 10  # never more than the burst
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_budget_window_needs_a_full_window_then_compares_the_average() -> None:
    window = BudgetWindow(budget_ms_per_s=100, window=2)
    window.add(0.0, 0)
    window.add(1.0, 500_000_000)  # 500 ms/s, but only one second seen
    assert not window.over() and window.rate_ms_per_s() == 500
    window.add(2.0, 600_000_000)
    assert window.over() and window.rate_ms_per_s() == 300
    for t in range(3, 8):  # then it settles at 10 ms/s
        window.add(float(t), 600_000_000 + (t - 2) * 10_000_000)
    assert window.span() >= 2 and window.rate_ms_per_s() == pytest.approx(10)
    assert not window.over()
    window.add(8.0, 0)  # a new process: the counters start over
    assert window.rate_ms_per_s() is None and not window.over()


def test_budget_zero_is_off() -> None:
    window = BudgetWindow(budget_ms_per_s=0, window=1)
    window.add(0.0, 0)
    window.add(5.0, 5_000_000_000)
    assert not window.over()


def test_program_stats_from_fdinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each program once, whatever the fd order; a link's fdinfo (fd 7, read last) names its
    program without statistics and must not count."""
    listdir = os.listdir
    monkeypatch.setattr("supervisor.isolation.bpf_stats.os.listdir", lambda path: sorted(listdir(path), key=int))
    fdinfo = tmp_path / "42" / "fdinfo"
    fdinfo.mkdir(parents=True)
    (fdinfo / "3").write_text("pos:\t0\nflags:\t02\nprog_type:\t5\nprog_id:\t7\nrun_time_ns:\t1000\nrun_cnt:\t4\n")
    (fdinfo / "4").write_text("pos:\t0\nflags:\t02\nprog_type:\t5\nprog_id:\t7\nrun_time_ns:\t1000\nrun_cnt:\t4\n")
    (fdinfo / "5").write_text("pos:\t0\nprog_id:\t9\nrun_time_ns:\t500\nrun_cnt:\t1\n")
    (fdinfo / "6").write_text("pos:\t0\nflags:\t02\nmap_type:\t27\nmap_id:\t3\n")
    (fdinfo / "7").write_text("pos:\t0\nflags:\t02000002\nlink_type:\traw_tracepoint\nlink_id:\t4\nprog_id:\t7\n")
    stats = program_stats(42, proc=tmp_path)
    assert stats is not None and (stats.run_time_ns, stats.run_count, stats.programs) == (1500, 5, 2)
    assert program_stats(43, proc=tmp_path) is None


def test_stats_switch_prefers_the_fd_and_counts_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[int] = []
    monkeypatch.setattr("supervisor.isolation.bpf_stats.os.close", closed.append)
    fds = iter([100, 101])
    switch = StatsSwitch(sysctl=tmp_path / "sysctl", enable_fd=lambda: next(fds))
    switch.acquire()
    switch.acquire()
    assert switch.fd == 100 and switch.enabled and switch.mechanism == "bpf(BPF_ENABLE_STATS)"
    switch.release()
    assert closed == [] and switch.enabled
    switch.release()
    assert closed == [100] and not switch.enabled
    assert not (tmp_path / "sysctl").exists()


def test_stats_switch_falls_back_to_the_sysctl_and_restores_it(tmp_path: Path) -> None:
    sysctl = tmp_path / "sysctl"
    sysctl.write_text("0\n")
    switch = StatsSwitch(sysctl=sysctl, enable_fd=lambda: -22)
    switch.acquire()
    assert sysctl.read_text() == "1" and "sysctl kernel.bpf_stats_enabled (was 0)" in switch.mechanism
    switch.close()
    assert sysctl.read_text() == "0" and not switch.enabled


def test_stats_switch_reports_when_nothing_works(tmp_path: Path) -> None:
    switch = StatsSwitch(sysctl=tmp_path / "missing" / "sysctl", enable_fd=lambda: -1)
    switch.acquire()
    assert not switch.enabled and "cannot enable BPF statistics" in switch.error
