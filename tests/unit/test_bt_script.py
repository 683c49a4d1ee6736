"""workers.bt_script: reading and rewriting bpftrace scripts (pure text, no bpftrace needed)."""

from __future__ import annotations

import pytest

from workers import bt_script
from workers.bt_script import AGENT_MAP, HEADER_ARGS, HEADER_FORMAT, ScriptError

SCRIPT = """#include <linux/sched.h>
// a comment with printf("x") and { braces
struct point { int x; int y; };
BEGIN { printf("starting\\n"); @n = 0; }
tracepoint:syscalls:sys_enter_openat, t:syscalls:sys_enter_open /comm != "}"/
{
  printf("file=%s brace={\\n", str(args->filename));  /* printf("no") */
  @opens_total[comm] = count();
}
uprobe:/bin/bash:readline { @lines = count(); }
interval:s:5 { print(@opens_total); }
"""


def test_probes_are_read_from_top_level_blocks_only() -> None:
    assert bt_script.probes(SCRIPT) == ["BEGIN", "tracepoint:syscalls:sys_enter_openat", "t:syscalls:sys_enter_open",
                                        "uprobe:/bin/bash:readline", "interval:s:5"]
    assert bt_script.probe_kind("t:syscalls:sys_enter_open") == ("tracepoint", "syscalls:sys_enter_open")
    assert bt_script.probe_kind("uprobe:/bin/bash:readline") == ("uprobe", "/bin/bash:readline")
    assert bt_script.probe_kind("BEGIN") == ("BEGIN", "")


def test_maps_ignore_strings_and_comments() -> None:
    assert bt_script.maps(SCRIPT) == {"n", "opens_total", "lines"}
    assert bt_script.maps('BEGIN { printf("@fake\\n"); } // @also_fake\n') == set()


def test_rewrite_keeps_line_numbers_and_adds_header_filter_and_prints() -> None:
    out = bt_script.rewrite(SCRIPT, metric_maps=["opens_total"], interval_ms=2500, agent_pids=[10, 11], pid=42,
                            comm='we"b')
    original = SCRIPT.splitlines()
    lines = out.splitlines()
    assert len(lines) >= len(original)
    # the user's lines are where they were: only text added inside them
    skip = f' if ({AGENT_MAP}[pid] || pid != 42 || comm != "we\\"b") {{ return; }}'
    seed = f" {AGENT_MAP}[pid] = 1; {AGENT_MAP}[10] = 1; {AGENT_MAP}[11] = 1;"
    for before, after in zip(original, lines, strict=False):
        for added in (HEADER_FORMAT, ", " + HEADER_ARGS, skip, seed):
            after = after.replace(added, "")
        assert after == before
    # printf in a probe block gets the header; BEGIN's printf and the comment's do not
    assert f'printf("{HEADER_FORMAT}file=%s brace={{\\n", {HEADER_ARGS}, str(args->filename));' in lines[6]
    assert '/* printf("no") */' in lines[6]
    assert 'BEGIN { @eunomia_agent[pid] = 1; @eunomia_agent[10] = 1; @eunomia_agent[11] = 1; printf("starting' \
        in lines[3]
    assert lines[5] == "{" + skip
    assert lines[9].startswith("uprobe:/bin/bash:readline {" + skip)
    assert lines[10] == "interval:s:5 { print(@opens_total); }"  # interval blocks are left alone
    assert "interval:ms:2500 { print(@opens_total); }" in lines[-1]
    assert any("sched_process_fork" in ln and "args->child_pid" in ln for ln in lines[len(original):])
    assert out.count("BEGIN") == 1  # bpftrace allows one BEGIN: the seed went into the script's own


def test_rewrite_adds_a_begin_when_the_script_has_none() -> None:
    out = bt_script.rewrite("t:sched:sched_process_exec { @x = count(); }\n", metric_maps=[], interval_ms=1000,
                            agent_pids=[7])
    assert "BEGIN { @eunomia_agent[pid] = 1; @eunomia_agent[7] = 1; }" in out
    assert "interval:ms" not in out  # no metrics, nothing to print
    assert "if (@eunomia_agent[pid]) { return; }" in out


@pytest.mark.parametrize("bad", ['BEGIN { printf("x); }', "BEGIN { x }}", "BEGIN { ", "/* open"])
def test_broken_scripts_are_reported(bad: str) -> None:
    with pytest.raises(ScriptError):
        bt_script.probes(bad)
