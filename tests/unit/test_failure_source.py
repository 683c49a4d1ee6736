"""The source line a compiler error or a verifier rejection points at, for the caller of POST /tracers."""

from __future__ import annotations

from pathlib import Path

from supervisor.tracer_admin import failure_source

VERIFIER = """bpf: Failed to load program: Permission denied
0: R1=ctx() R10=fp0
;  @ program.bpf.c:12
0: (b7) r1 = 0                        ; R1=0
;  @ program.bpf.c:0
5: (07) r2 += -4                      ; R2=fp-4
;  @ program.bpf.c:14
7: (79) r0 = *(u64 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
;  @ program.bpf.c:99
"""
COMPILER = """In file included from <built-in>:2:
program.bpf.c:17:41: error: no member named 'nosuch' in 'struct event'
   17 |     eunomia_fill_header(&e->hdr); e->nosuch = 1;
1 error generated.
"""


def test_verifier_line(tmp_path: Path) -> None:
    (tmp_path / "program.bpf.c").write_text("\n" * 13 + "    return *value;\n")
    assert failure_source(VERIFIER, [tmp_path]) == "program.bpf.c:14: return *value;"


def test_compiler_line_from_the_first_folder_that_has_the_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "program.bpf.c").write_text("\n" * 16 + "    eunomia_fill_header(&e->hdr); e->nosuch = 1;\n")
    assert failure_source(COMPILER, [tmp_path / "a", tmp_path / "b"]) == \
        "program.bpf.c:17: eunomia_fill_header(&e->hdr); e->nosuch = 1;"


def test_location_without_the_file_or_without_a_location(tmp_path: Path) -> None:
    assert failure_source(VERIFIER, [tmp_path]) == "program.bpf.c:14"
    assert failure_source("bpf: Failed to load program: Invalid argument\n", [tmp_path]) is None
