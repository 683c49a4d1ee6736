"""The worker of a bpftrace tracer: runs ``bpftrace -f json`` as its child and turns its output
into the same frames a BCC worker sends (events, metrics, heartbeats with the same counters).

bpftrace dies with the worker (parent-death signal) and the worker with bpftrace: a bpftrace
that exits while running ends the worker with status 1, so the supervisor restarts the pair
with its usual backoff. A script bpftrace refuses (syntax, a missing tracepoint, the verifier)
is a permanent error carrying bpftrace's own message, with the script's path and line.
"""

from __future__ import annotations

import collections
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ipc.envelope import FrameType, encode, encode_events
from workers import bt_attach, bt_script
from workers.bt_output import OutputParser
from workers.decoder import monotonic_to_epoch_offset
from workers.hooks import Hook, load_hook, read_hook
from workers.loader import LoadError
from workers.plan import WorkerPlan
from workers.runtime import PR_SET_PDEATHSIG, Worker, _libc, memory_kib

BPFTRACE_ENV = "EUNOMIA_BPFTRACE"  # another bpftrace binary (tests, packaging)
STOP_GRACE = 3.0  # seconds bpftrace gets to print its maps after SIGINT
ATTACH_TIMEOUT = 10.0  # seconds to wait for the kernel to show bpftrace's probes attached
STDERR_LINES = 40
# bpftrace's complaint when it cannot raise RLIMIT_MEMLOCK; harmless on kernels that account
# BPF memory to cgroups (5.11+), so it is never reported as the error.
_NOISE = re.compile(r"couldn't set RLIMIT_MEMLOCK")


def bpftrace_binary() -> str | None:
    return os.environ.get(BPFTRACE_ENV) or shutil.which("bpftrace") or shutil.which("bpftrace", path="/usr/sbin")


def _child_setup() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def classify(stderr: list[str], script: str, shown_as: str, returncode: int | None,
             originals: dict[str, str] | None = None) -> LoadError:
    """bpftrace's startup failure as a LoadError naming the user's script and quoting its lines as the
    user wrote them (``originals``: rewritten line → original line), not the worker's rewritten copy."""
    originals = originals or {}
    lines = [originals.get(ln, ln).replace(script, shown_as) for ln in stderr if not _NOISE.search(ln)]
    errors = [ln for ln in lines if "ERROR" in ln or "error" in ln]
    first = errors[0].strip() if errors else f"bpftrace exited with status {returncode} before attaching its probes"
    text = "\n".join(lines)
    if "tracepoint not found" in text or "No probes to attach" in text:
        kind = "tracepoint"
    elif "Error loading program" in text or "verifier" in text.lower():
        kind = "verifier"
    elif "attach" in text.lower() and "ERROR" in text:
        kind = "attach"
    else:
        kind = "compile"
    return LoadError(kind, first, "\n".join(lines[-STDERR_LINES:]))


class BpftraceWorker(Worker):
    def __init__(self, plan: WorkerPlan) -> None:
        super().__init__(plan)
        self.parser = OutputParser(plan.event, plan.metrics, monotonic_to_epoch_offset())
        self.child: subprocess.Popen[bytes] | None = None
        self.selector = selectors.DefaultSelector()
        self.partial = {"stdout": b"", "stderr": b""}
        self.stderr: collections.deque[str] = collections.deque(maxlen=200)
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"eunomia-{plan.instance}-"))
        self.script = self.tmpdir / Path(plan.program).name
        self.metrics_sent = 0

    # -- loading ---------------------------------------------------------------------
    def _load(self) -> None:
        binary = bpftrace_binary()
        if binary is None:
            raise LoadError("load", "bpftrace is not installed (apt-get install bpftrace, or `make setup`)")
        plan = self.plan
        try:
            text = Path(plan.program).read_text(encoding="utf-8")
            rewritten = bt_script.rewrite(
                text, metric_maps=[m["name"] for m in plan.metrics], interval_ms=int(plan.metrics_interval * 1000),
                agent_pids=[plan.supervisor_pid, os.getpid(), *self._agent_pids()],
                pid=int(plan.values.get("pid") or 0), comm=str(plan.values.get("comm") or ""))
            self.script.write_text(rewritten)
        except (OSError, UnicodeDecodeError, bt_script.ScriptError) as exc:
            raise LoadError("spec", f"{plan.program}: {exc}") from None
        env = {**os.environ, **plan.env}
        self.child = subprocess.Popen([binary, "-f", "json", str(self.script), *plan.positional],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env, preexec_fn=_child_setup, close_fds=True)
        for stream, name in ((self.child.stdout, "stdout"), (self.child.stderr, "stderr")):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            self.selector.register(stream, selectors.EVENT_READ, name)
        while self.parser.attached is None:
            self._read(1.0)
            if self.child.poll() is not None:
                self._read(0)  # what it printed last
                if self.parser.attached is None:
                    originals = {new: old for old, new in zip(text.splitlines(), rewritten.splitlines(), strict=False)
                                 if old != new}
                    raise classify(list(self.stderr), str(self.script), plan.program, self.child.returncode,
                                   originals)
            self._drain_control()
            if self.stopping:
                return
        # "attached_probes" comes before the attach itself: wait for the kernel to show it
        expected = bt_attach.expected_attachments(bt_script.probes(rewritten))
        if expected and not bt_attach.wait_attached(self.child.pid, expected, ATTACH_TIMEOUT,
                                                    alive=lambda: self.child is not None and self.child.poll() is None):
            sys.stderr.write(f"bpftrace has not shown {expected} attached probes after {ATTACH_TIMEOUT:.0f} s; "
                             "going on\n")
        source = read_hook(plan.hook) if plan.hook else None
        self._confine()  # an untrusted tracer's hook runs without privileges (bpftrace, its child, keeps them)
        if plan.hook:
            try:
                self.hook = Hook(load_hook(plan.hook, source))
                if self.hook.on_start:
                    self.hook.on_start(dict(plan.values))
            except Exception as exc:
                raise LoadError("hook", f"the hook failed to start: {exc.__class__.__name__}: {exc}") from exc

    # -- reading ---------------------------------------------------------------------
    def _read(self, timeout: float) -> bool:
        """Read what bpftrace wrote within ``timeout``; False once both its pipes are closed."""
        if not self.selector.get_map():
            return False
        for key, _ in self.selector.select(timeout):
            name = key.data
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                self.selector.unregister(key.fileobj)
                chunk = b"\n"  # the last line, even without its newline
            lines = (self.partial[name] + chunk).split(b"\n")
            self.partial[name] = lines.pop()
            for line in lines:
                if name == "stdout":
                    self.parser.feed(line)
                elif line.strip():
                    text = line.decode("utf-8", "replace")
                    self.stderr.append(text)
                    sys.stderr.write(f"bpftrace: {text}\n")
        for text in self.parser.text:
            sys.stderr.write(f"bpftrace printed: {text.rstrip()}\n")
        self.parser.text.clear()
        return True

    def _wait_for_data(self, poll_ms: int) -> None:
        self._read(poll_ms / 1000)
        if self.child is not None and self.child.poll() is not None and not self.stopping:
            self._read(0)
            tail = "\n".join(ln for ln in list(self.stderr)[-5:] if not _NOISE.search(ln))
            sys.stderr.write(f"bpftrace (pid {self.child.pid}) exited with status {self.child.returncode} "
                             f"while running{': ' + tail if tail else ''}\n")
            self.exit_code = 1

    def _final_drain(self) -> None:
        """Stop bpftrace with SIGINT: it runs END and prints every map once more (the final metrics)."""
        if self.child is None:
            return
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and self._read(0.1):
            pass
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()

    def _columns(self) -> list[str]:
        return self.parser.columns if self.plan.event else []

    def _follow_clock(self) -> None:
        self.parser.offset_ns = monotonic_to_epoch_offset()

    # -- sending ---------------------------------------------------------------------
    def _flush(self) -> None:
        rows = self.parser.take_rows()
        if rows:
            self.produced += len(rows)
            columns = self.parser.columns
            if self.hook is not None:
                kept = self.hook.apply(columns, rows)
                self.hook_dropped += len(rows) - len(kept)
                rows = kept
            for start in range(0, len(rows), self.plan.batch_max):
                chunk = rows[start:start + self.plan.batch_max]
                self.seq += 1
                if self.sender.send(encode_events(self.plan.instance, self.seq, columns, chunk), len(chunk)):
                    self.sent += len(chunk)
        samples = self.parser.take_samples()
        if samples:  # bpftrace prints the maps every metrics interval (the rewritten script's interval probe)
            self.metrics_sent += 1
            self.sender.send(encode(FrameType.METRICS, self.plan.instance,
                                    {"ts": time.time_ns(), "samples": samples}), 0)

    def _send_metrics(self) -> None:
        """Nothing to read here: bpftrace prints its maps itself (see _flush)."""

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        child = self._child_usage()
        out.update({
            "kernel_dropped": self.parser.lost,
            "parse_errors": self.parser.errors,
            "parse_last_error": self.parser.last_error,
            "helper_errors": self.parser.helper_errors,
            "child_pid": self.child.pid if self.child is not None and self.child.returncode is None else 0,
            "cpu_seconds": out["cpu_seconds"] + child.get("cpu_seconds", 0.0),
        })
        for key in ("rss_kib", "pss_kib", "private_clean_kib", "private_dirty_kib"):
            out[key] = out.get(key, 0) + child.get(key, 0)
        return out

    def _child_usage(self) -> dict[str, Any]:
        """bpftrace's own CPU time and memory: the tracer's cost is mostly there."""
        if self.child is None or self.child.returncode is not None:
            return {}
        import psutil

        try:
            proc = psutil.Process(self.child.pid)
            times = proc.cpu_times()
            usage: dict[str, Any] = {"cpu_seconds": times.user + times.system}
        except psutil.Error:
            return {}
        usage.update(memory_kib(f"/proc/{self.child.pid}/smaps_rollup"))
        return usage

    def _close(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        self.selector.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        ignored = sorted(self.parser.ignored_maps - {bt_script.AGENT_MAP})
        if ignored:
            sys.stderr.write(f"maps printed but not declared in the spec (not exported): {', '.join(ignored)}\n")
        super()._close()
