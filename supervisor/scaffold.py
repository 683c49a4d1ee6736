"""``eunomiactl new NAME``: a working tracer folder to start from, with its own test.

Both kinds make the same tracer, so that the tutorial and the test read the same either way:
one event per exec (the program file) and a counter of execs by command name. The test runs
the tracer with ``eunomiactl trace``, starts a program of a name only it uses, and checks the
event and the count: it passes as generated, and keeps passing while you change the tracer
if you keep what it checks (or change the test with it).
"""

from __future__ import annotations

import re
from pathlib import Path

KINDS = ("bcc", "bpftrace")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_SPEC = """\
name: {name}
{kind_line}description: >-
  Programs started (exec), and a count of execs by command name. Made by `eunomiactl new`:
  edit it (see docs/tutorial-first-tracer.md).
{probes}event:
  fields:
    - {{name: filename, type: {filename_type}, description: the program file that was executed}}
metrics:
  - name: {name}_execs_total
    type: counter
    help: Execs by command name.
    labels: [{label}]
"""

_BCC_PROGRAM = """\
/* {name}: made by `eunomiactl new`. One event per exec, and a count of execs by command name.
 * Run it: eunomiactl trace {name} --tracer-path {parent}
 */
#include "eunomia.h"

struct event {{
    struct eunomia_header hdr; /* ts, cgroup_id, pid, tid, uid, gid, comm: filled in for you */
    char filename[128];
}};

struct comm_key {{
    char comm[16];
}};
BPF_HASH({name}_execs_total, struct comm_key, u64, 10240); /* the map's name is the metric's */

TRACEPOINT_PROBE(sched, sched_process_exec)
{{
    if (eunomia_skip_current()) /* the agent itself, and the -p/-n/--container … filters */
        return 0;

    struct comm_key key = {{}};
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    u64 zero = 0;
    u64 *count = {name}_execs_total.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop(); /* the map is full: counted, never silent */

    struct event *e = eunomia_reserve_event(sizeof(struct event)); /* header filled in */
    if (!e)
        return 0; /* the ring buffer is full: eunomia_reserve_event() counted the loss */
    TP_DATA_LOC_READ_STR(e->filename, filename, sizeof(e->filename));
    eunomia_submit(e, sizeof(*e));
    return 0;
}}
"""

_BT_PROGRAM = """\
// {name}: made by `eunomiactl new`. One event per exec, and a count of execs by command name.
// Run it: eunomiactl trace {name} --tracer-path {parent}
tracepoint:sched:sched_process_exec
{{
  printf("filename=%s\\n", str(args->filename));   // an event: key=value pairs of its fields
  @{name}_execs_total[comm] = count();            // a metric: the map's name is the metric's
}}
"""

_HOOK = '''\
"""Optional: Python that runs inside the tracer's worker, after its probes are attached.
Delete this file and the `hook:` line of tracer.yaml if you do not need it."""


def on_start(args: dict) -> None:
    """Called once with the tracer's arguments."""


def on_event(event: dict) -> dict | None:
    """Return the event (changed or not), or None to drop it."""
    return event
'''

_TEST = '''\
"""{name}: run the tracer, start a program only this test uses, and check what the tracer saw.

Run it as root: python -m pytest {folder}/test_{name}.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EUNOMIACTL = [sys.executable, "-m", "supervisor.cli.main"]


def test_an_exec_is_an_event_and_counted() -> None:
    name = f"t{{os.getpid() % 100000:05d}}{name_tag}"[:15]  # a command name no other program has
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / name
        shutil.copy("/bin/true", program)
        trace = subprocess.Popen([*EUNOMIACTL, "trace", "{name}", "--tracer-path", str(HERE.parent), "--json",
                                  "-n", name, "--duration", "8"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert trace.stderr is not None
        started = trace.stderr.readline()
        assert "Hit Ctrl-C" in started, started + trace.stderr.read()
        for _ in range(2):
            subprocess.run([str(program)], check=True)
        out, err = trace.communicate(timeout=60)
    assert trace.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    events = [r for r in records if "filename" in r]
    assert [(e["comm"], e["filename"]) for e in events] == [(name, str(program))] * 2
    counts = [r["value"] for r in records if r.get("metric") == "eunomia_{name}_execs_total"
              and r["labels"].get("comm") == name]
    assert sum(counts) == 2
'''


class ScaffoldError(ValueError):
    """A name or folder that cannot be scaffolded; the message says why."""


def scaffold(name: str, directory: Path, kind: str = "bcc", hook: bool = False) -> list[Path]:
    """Write ``directory/name/`` (tracer.yaml, the program, a test, optionally hook.py); the files written."""
    if not _NAME.match(name):
        raise ScaffoldError(f"{name!r} is not a tracer name: lower-case letters, digits and _, a letter first")
    if kind not in KINDS:
        raise ScaffoldError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    folder = Path(directory) / name
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists: choose another name or remove it")
    bcc = kind == "bcc"
    spec = _SPEC.format(
        name=name, kind_line="" if bcc else "kind: bpftrace\n",
        probes="probes:\n  - tracepoint: sched:sched_process_exec\n" if bcc else "",
        filename_type='"char[128]"' if bcc else "str",
        label='{name: comm, type: "char[16]"}' if bcc else "comm")
    if hook:
        spec = spec.replace("description:", "hook: hook.py\ndescription:", 1)
    program = (_BCC_PROGRAM if bcc else _BT_PROGRAM).format(name=name, parent=folder.parent)
    files = {
        folder / "tracer.yaml": spec,
        folder / ("program.bpf.c" if bcc else "program.bt"): program,
        folder / f"test_{name}.py": _TEST.format(name=name, folder=folder, name_tag=name[:4]),
    }
    if hook:
        files[folder / "hook.py"] = _HOOK
    folder.mkdir(parents=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)
