"""The loader inlines local headers (BCC rewrites map syntax only in the main file)."""

from __future__ import annotations

from pathlib import Path

from workers.loader import assemble_source
from workers.plan import WorkerPlan


def _plan(tmp_path: Path, program: str) -> WorkerPlan:
    include, folder = tmp_path / "include", tmp_path / "tracer"
    include.mkdir()
    folder.mkdir()
    (include / "eunomia.h").write_text('#ifndef EUNOMIA_H\n#define EUNOMIA_H\nBPF_HASH(common, u32, u64);\n#endif\n')
    (include / "eunomia_epilogue.c").write_text("/* epilogue */\n")
    (include / "shared.h").write_text('#include "eunomia.h"\n#include "base.h"\nBPF_HASH(shared_map, u32, u64);\n')
    (include / "base.h").write_text("struct base { int x; };\n")
    (folder / "local.h").write_text('#include "base.h"\nstatic int local(void) { return 1; }\n')
    (folder / "program.bpf.c").write_text(program)
    return WorkerPlan(instance="t-1", tracer="t", folder=str(folder), program=str(folder / "program.bpf.c"),
                      include_dirs=[str(include), str(folder)], cflags=[], probes=[], event=None, metrics=[],
                      hook=None, values={}, events_endpoint="", control_endpoint="", supervisor_pid=1)


PROGRAM = """#include "eunomia.h"
#include <linux/sched.h>
#include "shared.h"  /* maps in a header */
#include "local.h"
int probe(void) { return local(); }
"""


def test_local_headers_are_inlined_once_and_kernel_headers_left_alone(tmp_path: Path) -> None:
    source = assemble_source(_plan(tmp_path, PROGRAM))
    assert source.count("BPF_HASH(common") == 1
    assert source.count("BPF_HASH(shared_map") == 1
    assert source.count("struct base {") == 1  # included by shared.h and local.h: once
    assert "#include <linux/sched.h>" in source
    assert '#include "' not in source
    assert source.index("BPF_HASH(shared_map") < source.index("static int local") < source.index("int probe")


def test_line_directives_keep_compiler_messages_pointing_at_the_right_file(tmp_path: Path) -> None:
    lines = assemble_source(_plan(tmp_path, PROGRAM)).splitlines()
    probe = lines.index("int probe(void) { return local(); }")
    directive = next(line for line in reversed(lines[:probe]) if line.startswith("#line"))
    assert directive == '#line 5 "program.bpf.c"'  # the next line is the program's 5th
    assert lines[lines.index("BPF_HASH(shared_map, u32, u64);") - 1] == '#line 3 "shared.h"'


def test_line_numbers_after_a_tracepoint_probe_survive_bccs_inserted_struct(tmp_path: Path) -> None:
    program = '#include "eunomia.h"\nTRACEPOINT_PROBE(sched, sched_process_exec)\n{\n    return 0;\n}\n' \
              "TRACEPOINT_PROBE(sched, sched_process_exit) {  // same line\n    return 1;\n}\n"
    lines = assemble_source(_plan(tmp_path, program)).splitlines()
    first = lines.index("TRACEPOINT_PROBE(sched, sched_process_exec)")
    assert lines[first + 1] == "{"
    assert lines[first + 2] == '#line 4 "program.bpf.c"'  # after the brace, where BCC adds a line break
    second = lines.index("TRACEPOINT_PROBE(sched, sched_process_exit) {  // same line")
    assert lines[second + 1] == '#line 7 "program.bpf.c"'


def test_line_numbers_after_a_named_probe_function(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "int on_malloc(struct pt_regs *ctx)\n{\n    return 0;\n}\nint other(void)\n{\n}\n")
    plan.probes = [{"kind": "uprobe", "target": "c:malloc", "function": "on_malloc"}]
    lines = assemble_source(plan).splitlines()
    assert lines[lines.index("int on_malloc(struct pt_regs *ctx)") + 2] == '#line 3 "program.bpf.c"'
    assert lines[lines.index("int other(void)") + 2] != '#line 7 "program.bpf.c"'
