"""Compile a tracer with BCC and attach it, turning every failure into a clear report.

BCC prints compiler diagnostics and the verifier log on the C stderr, so stderr is
captured at the file-descriptor level while compiling and loading; the relevant lines
travel back to the supervisor and from there to the user.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.plan import WorkerPlan
from workers.probes import PERF_EVENTS

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
LOG_TAIL_LINES = 40

# BCC rewrites map syntax (``m.lookup()``) and generates tracepoint argument structs only in
# the main file, never in included headers. So the common header is inlined before the
# program (its ``#include "eunomia.h"`` then hits the include guard) and the epilogue,
# with the agent-tracking probes and the event layout check, after it. Likewise every
# ``#include "x.h"`` of a header in bpf/include or the tracer's folder is inlined, once,
# so shared headers may declare maps and use map syntax.
PROLOGUE = "eunomia.h"
EPILOGUE = "eunomia_epilogue.c"
_LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*(?://.*|/\*.*)?$')
# BCC inserts the tracepoint's argument struct (several lines) where TRACEPOINT_PROBE(...)
# stands, and a line break after the opening brace of every probe function, which shifts
# every later line of the file. A #line after that brace puts them back, so the verifier's
# and the compiler's line numbers point at the program as written.
_TRACEPOINT_PROBE = re.compile(r"^\s*TRACEPOINT_PROBE\s*\(")


@dataclass(slots=True)
class LoadError(Exception):
    """Why a tracer could not be loaded. ``kind``: spec, tracepoint, compile, verifier, attach."""

    kind: str
    message: str
    log: str = ""
    permanent: bool = True

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def tracefs() -> Path | None:
    for path in TRACEFS_CANDIDATES:
        if (path / "events").is_dir():
            return path
    return None


def missing_tracepoints(targets: list[str], root: Path | None = None) -> list[str]:
    root = root or tracefs()
    if root is None:
        return list(targets)
    return [t for t in targets if not (root / "events" / t.replace(":", "/")).is_dir()]


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Collect what is written to fd 2 inside the block; the list receives the text afterwards.

    When fd 2 is a file (the worker's log, under the supervisor) nothing is redirected: the
    output is read back from where the block started. So when LLVM aborts the process in
    the middle of a compile, its message is still in the log for the supervisor's report.
    """
    out: list[str] = []
    try:
        start = os.lseek(2, 0, os.SEEK_END) if stat.S_ISREG(os.fstat(2).st_mode) else None
    except OSError:
        start = None
    if start is not None:
        try:
            yield out
        finally:
            with open("/proc/self/fd/2", "rb") as log:
                log.seek(start)
                out.append(log.read().decode("utf-8", "replace"))
        return
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            out.append(text)
            if text:
                os.write(2, text.encode())


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _verifier_reason(log: str, fallback: str) -> str:
    """The verifier's complaint: the last line before its 'processed N insns' summary."""
    lines = [ln.strip() for ln in log.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("processed ") and " insns" in line:
            previous = [ln for ln in lines[:i] if ln]
            if previous:
                return previous[-1]
    return fallback


def _classify(exc: Exception, log: str) -> LoadError:
    text = str(exc)
    if "Failed to compile BPF" in text or re.search(r"\berror:", log):
        errors = [ln for ln in log.splitlines() if "error:" in ln or "warning:" not in ln]
        return LoadError("compile", "the program does not compile", _tail("\n".join(errors) or log))
    if "Failed to load BPF program" in text or "processed" in log:
        return LoadError("verifier", f"the kernel verifier rejected the program: {_verifier_reason(log, text)}",
                         _tail(log))
    if "Failed to attach" in text:
        return LoadError("attach", text, _tail(log))
    return LoadError("load", text, _tail(log), permanent=False)


def _find_include(plan: WorkerPlan, name: str) -> Path:
    for folder in plan.include_dirs:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise LoadError("load", f"{name} not found in {plan.include_dirs}")


def _inline(plan: WorkerPlan, path: Path, seen: set[Path]) -> str:
    """The file with its local ``#include "x.h"`` lines replaced by the headers (each once)."""
    seen.add(path.resolve())
    out = [f'#line 1 "{path.name}"']
    functions = {p["function"] for p in plan.probes if p.get("function")}
    probe_function = re.compile(r"^\s*int\s+(" + "|".join(map(re.escape, functions)) + r")\s*\(") \
        if functions else None
    in_probe_head = False  # between a probe function's name and its opening brace
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = _LOCAL_INCLUDE.match(line)
        header = _find_local(plan, match.group(1)) if match else None
        if header is None:
            out.append(line)
            in_probe_head = in_probe_head or bool(
                _TRACEPOINT_PROBE.match(line) or (probe_function and probe_function.match(line)))
            if in_probe_head and "{" in line:
                out.append(f'#line {number + 1} "{path.name}"')
                in_probe_head = False
            continue
        if header.resolve() not in seen:
            out.append(_inline(plan, header, seen))
        out.append(f'#line {number + 1} "{path.name}"')
    return "\n".join(out) + "\n"


def _find_local(plan: WorkerPlan, name: str) -> Path | None:
    try:
        return _find_include(plan, name)
    except LoadError:
        return None  # not ours (a kernel header): left to the compiler


def assemble_source(plan: WorkerPlan) -> str:
    seen: set[Path] = set()
    return "".join(_inline(plan, path, seen) for path in
                   (_find_include(plan, PROLOGUE), Path(plan.program), _find_include(plan, EPILOGUE)))


def _deferred_attach_bpf() -> type:
    """``bcc.BPF`` without the automatic attach at the end of its constructor.

    BCC attaches every ``TRACEPOINT_PROBE`` in ``_trace_autoload()``; deferring it lets the
    worker fill its maps (the agent's own pids) before the first probe fires.
    """
    from bcc import BPF  # imported late: it is the heaviest import of the worker

    class DeferredAttachBPF(BPF):  # type: ignore[misc]
        def _trace_autoload(self) -> None:
            pass

        def attach_probes(self) -> None:
            BPF._trace_autoload(self)

    return DeferredAttachBPF


def _guarded(step: Callable[[], Any]) -> Any:
    failure: Exception | None = None
    with captured_stderr() as log:
        try:
            result = step()
        except Exception as exc:  # BCC raises plain Exception for everything
            failure = exc
    if failure is not None:
        raise _classify(failure, log[0])
    return result


def compile_program(plan: WorkerPlan, extra_cflags: list[str] | None = None) -> Any:
    """Compile the program and create its maps; nothing is attached yet (see :func:`attach`)."""
    missing = missing_tracepoints([p["target"] for p in plan.probes if p["kind"] == "tracepoint"])
    if missing:
        raise LoadError("tracepoint", f"tracepoint(s) not available on this kernel: {', '.join(missing)}")
    for probe in plan.probes:
        if probe["kind"] in ("uprobe", "uretprobe"):
            binary = probe["target"].partition(":")[0]
            if "/" in binary and not Path(binary).is_file():
                raise LoadError("uprobe", f"{probe['kind']} {probe['target']}: no such file {binary}")
    bpf_class = _deferred_attach_bpf()
    source = assemble_source(plan)
    cflags = [*plan.cflags, *(extra_cflags or []), *(f"-I{d}" for d in plan.include_dirs), "-Wno-macro-redefined"]
    return _guarded(lambda: bpf_class(text=source, cflags=cflags))


def attach(bpf: Any, plan: WorkerPlan) -> None:
    """Load every probe through the verifier and attach it: tracepoints, then uprobes and perf events."""
    _guarded(bpf.attach_probes)
    pid = int(plan.values.get("pid") or -1)  # uprobes of one process only, when --pid is given
    for probe in plan.probes:
        kind, target, function = probe["kind"], probe["target"], probe.get("function", "")
        if kind in ("uprobe", "uretprobe"):
            binary, _, symbol = target.partition(":")
            attach_fn = bpf.attach_uprobe if kind == "uprobe" else bpf.attach_uretprobe
            _attach(lambda f=attach_fn, b=binary, s=symbol, fn=function: f(name=b, sym=s, fn_name=fn, pid=pid),
                    f"{kind} {target}")
        elif kind == "perf_event":
            ev_type, ev_config = PERF_EVENTS[target]
            _attach(lambda t=ev_type, c=ev_config, fn=function, freq=probe["frequency"]: bpf.attach_perf_event(
                ev_type=t, ev_config=c, fn_name=fn, sample_freq=freq, cpu=-1), f"perf_event {target}")


def _attach(step: Callable[[], Any], what: str) -> None:
    try:
        _guarded(step)
    except LoadError as exc:
        if exc.kind in ("load", "attach"):  # BCC's words for a symbol or event that is not there
            raise LoadError("attach", f"cannot attach {what}: {exc.message}", exc.log) from None
        raise
