"""The worker process: load one tracer, drain its ring buffer and maps, batch, send.

The ring-buffer callback only copies bytes; decoding happens per batch. Sending never
blocks (a frame that does not fit the IPC queue is dropped and counted), so a slow
supervisor can never stall the reader. The worker dies with its supervisor: a
parent-death signal, plus its own check of the supervisor's heartbeats.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import time
from typing import Any

import zmq

from ipc.channels import DroppingSender, connect_worker
from ipc.envelope import FrameError, FrameType, decode, encode, encode_events
from ipc.runtime_dir import Endpoints
from workers import privileges
from workers.cgroup_rows import MAINTAIN_INTERVAL
from workers.decoder import EventDecoder, monotonic_to_epoch_offset
from workers.hooks import Hook, load_hook, read_hook
from workers.loader import LoadError, attach, compile_program
from workers.metrics_reader import MetricsReader
from workers.plan import WorkerPlan
from workers.rate_limit import TokenBucket

EXIT_OK = 0
EXIT_LOST_SUPERVISOR = 3
EXIT_PERMANENT = 78  # EX_CONFIG: the supervisor must not restart us
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(expected_parent: int) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:  # the parent died before prctl took effect
        os._exit(EXIT_LOST_SUPERVISOR)


def memory_kib(path: str = "/proc/self/smaps_rollup") -> dict[str, int]:
    wanted = {"Rss:": "rss_kib", "Pss:": "pss_kib", "Private_Clean:": "private_clean_kib",
              "Private_Dirty:": "private_dirty_kib"}
    out: dict[str, int] = {}
    try:
        with open(path) as fh:
            for line in fh:
                key, _, rest = line.partition(" ")
                if key in wanted:
                    out[wanted[key]] = int(rest.split()[0])
    except OSError:
        pass
    return out


class Worker:
    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.ctx = zmq.Context(1)
        data, self.control = connect_worker(
            self.ctx, Endpoints(plan.events_endpoint, plan.control_endpoint), plan.instance)
        self.sender = DroppingSender(data)
        self.stopping = False
        self.raw: list[bytes] = []
        self.produced = 0  # records read from the ring buffer
        self.sent = 0  # events handed to the IPC queue
        self.hook_dropped = 0  # events the hook chose to drop or failed on
        self.rate_dropped = 0  # records over the event-rate limit: counted, never copied
        self.bucket = TokenBucket(plan.event_rate, max(1, plan.event_burst)) if plan.event_rate > 0 else None
        self.allowance = -1  # records the bucket allows in this read of the ring buffer; -1: no limit
        self.dropped_privileges: privileges.PrivilegeReport | None = None
        self.hook: Hook | None = None
        self.decoder: EventDecoder | None = None
        self.metrics: MetricsReader | None = None
        self.bpf: Any = None
        self.seq = 0
        self.filter_updates = 0  # times the cgroup filter set was (re)written
        self.filter_cgroups = 0  # cgroup ids in it now
        self.last_supervisor_hb = time.monotonic()
        self.exit_code: int | None = None  # set when the tracer fails while running: the loop ends

    # -- control channel -------------------------------------------------------------
    def _send_control(self, type_: FrameType, payload: dict[str, Any] | None = None) -> None:
        try:
            self.control.send(encode(type_, self.plan.instance, payload), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the supervisor is not reading; heartbeats will tell it (or not) later

    def _drain_control(self) -> None:
        while self.control.poll(0):
            try:
                frame = decode(self.control.recv(zmq.NOBLOCK))
            except (FrameError, zmq.Again):
                continue
            if frame.type is FrameType.HEARTBEAT:
                self.last_supervisor_hb = time.monotonic()
            elif frame.type is FrameType.STOP:
                self.stopping = True
            elif frame.type is FrameType.FILTER and self.bpf is not None:
                cgroups = frame.payload.get("cgroups")
                if isinstance(cgroups, list) and all(type(c) is int and c > 0 for c in cgroups):
                    self._set_cgroups(set(cgroups))

    def _missed_runs(self) -> int:
        """Program runs the kernel skipped (``recursion_misses``): events lost before any map or buffer."""
        missed = 0
        for function in self.bpf.funcs.values():
            try:
                with open(f"/proc/self/fdinfo/{function.fd}") as fh:
                    for line in fh:
                        if line.startswith("recursion_misses:"):
                            missed += int(line.split()[1])
            except (OSError, ValueError):
                continue
        return missed

    def stats(self) -> dict[str, Any]:
        kernel = missed = 0
        if self.bpf is not None:
            missed = self._missed_runs()
            kernel = sum(int(v) for v in self.bpf["eunomia_drops"][0]) + missed
        return {
            "produced": self.produced,
            "sent": self.sent,
            "hook_dropped": self.hook_dropped,
            "rate_dropped": self.rate_dropped,
            "ipc_dropped": self.sender.items_dropped,
            "ipc_frames_dropped": self.sender.frames_dropped,  # including metrics frames, which carry no events
            "kernel_dropped": kernel,  # ring buffer or map full, plus missed program runs
            "kernel_missed_runs": missed,
            "stack_map_clears": 0,
            **(self.metrics.stats() if self.metrics else {}),
            "filter_cgroups": self.filter_cgroups,
            "filter_updates": self.filter_updates,
            "hook_errors": self.hook.errors if self.hook else 0,
            "hook_last_error": self.hook.last_error if self.hook else "",
            "cpu_seconds": sum(os.times()[:2]),
            **memory_kib(),
        }

    # -- loading ---------------------------------------------------------------------
    def _load(self) -> None:
        self.bpf = compile_program(self.plan, [f"-DEUNOMIA_SELF_PID={os.getpid()}",
                                               f"-DEUNOMIA_AGENT_PID={self.plan.supervisor_pid}",
                                               f"-DEUNOMIA_NCPUS={os.cpu_count() or 64}"])
        # The other agent processes go into the map before any probe fires; whatever the
        # supervisor forks after the attach, the program adds itself. A second pass
        # catches a fork that fell between the first pass and the attach.
        self._seed_agent_pids(self._agent_pids())
        self._set_cgroups(set(self.plan.cgroup_ids))
        attach(self.bpf, self.plan)
        self._seed_agent_pids(self._agent_pids())
        if self.plan.event is not None:
            self.decoder = EventDecoder(self.plan.event)
            self.bpf[self.plan.event["ringbuf"]].open_ring_buffer(self._on_record)
        if self.plan.metrics:
            self.metrics = MetricsReader(self.bpf, self.plan.metrics,
                                         row_idle=float(self.plan.values.get("cgroup_row_idle", 60)))
        source = read_hook(self.plan.hook) if self.plan.hook else None
        self._confine()
        if self.plan.hook:
            try:
                self.hook = Hook(load_hook(self.plan.hook, source))
                if self.hook.on_start:
                    self.hook.on_start(dict(self.plan.values))
            except Exception as exc:
                raise LoadError("hook", f"the hook failed to start: {exc.__class__.__name__}: {exc}") from exc

    def _confine(self) -> None:
        """The untrusted tracer's limits that the worker applies itself, then the privilege drop."""
        plan = self.plan
        if plan.rlimit_as_extra:
            privileges.limit_address_space(plan.rlimit_as_extra)
        if plan.nice:
            privileges.lower_priority(plan.nice)
        if not plan.drop_privileges:
            return
        if any(isinstance(label, dict) and label.get("stack") == "kernel"
               for m in plan.metrics for label in m.get("labels", [])):
            self.bpf.ksym(0)  # read /proc/kallsyms now: without CAP_SYSLOG its addresses read as zero
        try:
            self.dropped_privileges = privileges.drop_privileges(plan.drop_uid, plan.drop_gid, plan.supervisor_pid)
        except OSError as exc:
            raise LoadError("isolation", f"cannot drop privileges: {exc}") from exc

    def _agent_pids(self) -> set[int]:
        """The supervisor's other workers; later forks are added by the program itself."""
        import psutil

        try:
            return {p.pid for p in psutil.Process(self.plan.supervisor_pid).children(recursive=True)}
        except psutil.Error:
            return set()

    def _seed_agent_pids(self, pids: set[int]) -> None:
        table = self.bpf["eunomia_agent_pids"]
        for pid in pids:
            table[table.Key(pid)] = table.Leaf(1)
        generation = self.bpf["eunomia_agent_generation"]  # invalidates the per-CPU verdicts
        generation[generation.Key(0)] = generation.Leaf(generation[generation.Key(0)].value + 1)

    def _set_cgroups(self, wanted: set[int]) -> None:
        """Make the kernel's cgroup filter set equal ``wanted`` (the supervisor keeps it current)."""
        table = self.bpf["eunomia_cgroups"]
        present = {key.value for key in table.keys()}
        for cgroup_id in present - wanted:
            del table[table.Key(cgroup_id)]
        for cgroup_id in wanted - present:
            table[table.Key(cgroup_id)] = table.Leaf(1)
        generation = self.bpf["eunomia_cgroup_generation"]  # invalidates the per-CPU verdicts
        generation[generation.Key(0)] = generation.Leaf(generation[generation.Key(0)].value + 1)
        self.filter_updates += 1
        self.filter_cgroups = len(wanted)

    def _on_record(self, _ctx: Any, data: Any, size: int) -> None:
        if self.allowance == 0:  # over the event-rate limit
            self.produced += 1
            self.rate_dropped += 1
            return
        self.allowance -= 1
        self.raw.append(ctypes.string_at(data, size))

    # -- reading ---------------------------------------------------------------------
    def _wait_for_data(self, poll_ms: int) -> None:
        """Wait at most ``poll_ms`` for the kernel's output and collect what arrived."""
        if self.decoder is not None:
            self._read_ring(poll_ms)
        else:
            time.sleep(poll_ms / 1000)

    def _read_ring(self, poll_ms: int) -> None:
        """Poll, then consume what arrived without a wakeup, within the event-rate allowance."""
        if self.bucket is not None:
            self.allowance = start = self.bucket.available()
        # Probes wake us only once a CPU has queued a slice of the ring; on timeout,
        # poll() reads nothing, so consume() collects what arrived without a wakeup.
        self.bpf.ring_buffer_poll(poll_ms)
        self.bpf.ring_buffer_consume()
        if self.bucket is not None:
            self.bucket.spend(start - self.allowance)

    def _final_drain(self) -> None:
        if self.decoder is not None:
            self._read_ring(0)

    def _columns(self) -> list[str]:
        return self.decoder.columns if self.decoder else []

    def _follow_clock(self) -> None:
        if self.decoder is not None:
            self.decoder.offset_ns = monotonic_to_epoch_offset()  # follow clock steps

    # -- sending ---------------------------------------------------------------------
    def _flush(self) -> None:
        if not self.raw or self.decoder is None:
            return
        raw, self.raw = self.raw, []
        self.produced += len(raw)
        rows = [self.decoder.decode(r) for r in raw]
        if self.hook is not None:
            kept = self.hook.apply(self.decoder.columns, rows)
            self.hook_dropped += len(rows) - len(kept)
            rows = kept
        for start in range(0, len(rows), self.plan.batch_max):
            chunk = rows[start:start + self.plan.batch_max]
            self.seq += 1
            if self.sender.send(encode_events(self.plan.instance, self.seq, self.decoder.columns, chunk), len(chunk)):
                self.sent += len(chunk)

    def _send_metrics(self) -> None:
        if self.metrics is None:
            return
        samples = self.metrics.read()
        self.sender.send(encode(FrameType.METRICS, self.plan.instance,
                                {"ts": time.time_ns(), "samples": samples}), 0)

    # -- main loop -------------------------------------------------------------------
    def run(self) -> int:
        self._send_control(FrameType.HELLO, {"pid": os.getpid()})
        try:
            self._load()
        except LoadError as exc:
            self._send_control(FrameType.ERROR, {"kind": exc.kind, "message": exc.message, "log": exc.log,
                                                 "permanent": exc.permanent})
            self._close()
            return EXIT_PERMANENT if exc.permanent else 1
        _libc.malloc_trim(0)  # give back what the compiler used
        self._send_control(FrameType.READY, {"pid": os.getpid(), "probes": self.plan.probes,
                                             "columns": self._columns()})
        plan = self.plan
        now = time.monotonic()
        next_flush = now + plan.batch_interval
        next_hb = now
        next_metrics = now + plan.metrics_interval
        next_clock = now + 60
        next_rows = now + MAINTAIN_INTERVAL
        poll_ms = max(1, int(plan.batch_interval * 1000))
        exit_code = EXIT_OK
        while not self.stopping:
            self._wait_for_data(poll_ms)
            if self.exit_code is not None:  # the tracer failed while running
                exit_code = self.exit_code
                break
            now = time.monotonic()
            if len(self.raw) >= plan.batch_max or now >= next_flush:
                self._flush()
                next_flush = now + plan.batch_interval
            self._drain_control()
            if now >= next_hb:
                self._send_control(FrameType.HEARTBEAT, self.stats())
                next_hb = now + plan.heartbeat_interval
            if now >= next_metrics:
                self._send_metrics()
                next_metrics = now + plan.metrics_interval
            if now >= next_rows and self.metrics is not None and self.metrics.rows is not None:
                self.metrics.maintain()
                next_rows = now + MAINTAIN_INTERVAL
            if now >= next_clock:
                self._follow_clock()
                next_clock = now + 60
            if now - self.last_supervisor_hb > plan.heartbeat_timeout:
                exit_code = EXIT_LOST_SUPERVISOR
                break
        self._final_drain()
        self._flush()
        self._send_metrics()
        self._send_control(FrameType.HEARTBEAT, {**self.stats(), "final": True})
        self._close()
        return exit_code

    def _close(self) -> None:
        self.sender.socket.close(linger=1000)
        self.control.close(linger=1000)
        self.ctx.term()


def run_worker(plan: WorkerPlan) -> int:
    die_with_parent(plan.supervisor_pid)
    faulthandler.enable()
    if plan.drop_privileges:  # per-thread settings: before ZeroMQ starts its I/O thread
        privileges.restrict_future_privileges()
    if plan.kind == "bpftrace":
        from workers.bt_runtime import BpftraceWorker

        worker: Worker = BpftraceWorker(plan)
    else:
        worker = Worker(plan)

    def request_stop(_sig: int, _frame: Any) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return worker.run()
