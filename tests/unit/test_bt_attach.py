"""workers.bt_attach: readiness of a bpftrace child is what the kernel shows attached."""

from __future__ import annotations

from workers.bt_attach import expected_attachments, wait_attached


def test_only_probes_attached_through_perf_events_are_expected() -> None:
    probes = ["BEGIN", "tracepoint:syscalls:sys_enter_write", "t:sched:sched_process_exec", "interval:ms:100",
              "uprobe:/bin/bash:readline", "kr:vfs_read", "profile:hz:99", "END", "rawtracepoint:sched_switch"]
    assert expected_attachments(probes) == 4


def test_waits_until_the_count_is_reached() -> None:
    counts = iter([0, 1, 1, 2])
    assert wait_attached(1, 2, timeout=5, alive=lambda: True, count=lambda _pid: next(counts), sleep=0)


def test_gives_up_when_the_process_is_gone_or_after_the_timeout() -> None:
    assert not wait_attached(1, 2, timeout=5, alive=lambda: False, count=lambda _pid: 0, sleep=0)
    assert not wait_attached(1, 2, timeout=0.01, alive=lambda: True, count=lambda _pid: 1, sleep=0.001)
