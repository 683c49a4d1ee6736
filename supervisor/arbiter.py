"""The arbiter: owns every watcher, the IPC sockets and the sinks, in one asyncio loop.

Everything that changes supervisor state runs on this loop (API handlers included),
so there are no locks. Worker processes are polled, not waited for, and every frame
from a worker is decoded defensively: garbage is counted and discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from ipc.channels import bind_supervisor
from ipc.envelope import Frame, FrameError, FrameType, decode, encode
from ipc.runtime_dir import Endpoints, ensure_private_dir
from supervisor.backoff import CrashHistory
from supervisor.config import AgentConfig
from supervisor.containers.cgroup_filter import CgroupFilter, ContainerRef
from supervisor.containers.cgroup_index import unified_root
from supervisor.export import Exports
from supervisor.isolation.confinement import Isolation
from supervisor.sinks import Sink, flatten_samples
from supervisor.states import PROCESS_STATES, State
from supervisor.watcher import Watcher, describe_exit
from workers import args as tracer_args
from workers.catalog import Catalog
from workers.runtime import EXIT_PERMANENT

if TYPE_CHECKING:
    from supervisor.containers.enrich import Enricher

log = logging.getLogger("eunomia.supervisor")
TICK = 0.1
FILTER_REFRESH = 1.0  # seconds between recomputations of the cgroup filters


class NotFound(KeyError):
    pass


class Conflict(RuntimeError):
    pass


@dataclass(slots=True)
class SupervisorStats:
    bad_frames: int = 0
    last_bad_frame: str = ""
    unknown_instance_frames: int = 0
    started_at: float = field(default_factory=time.time)


class Supervisor:
    def __init__(self, config: AgentConfig, catalog: Catalog, sinks: list[Sink] | None = None,
                 on_ready: Callable[[], None] | None = None, exports: Exports | None = None,
                 containers: Callable[[], list[ContainerRef]] | None = None,
                 enricher: Enricher | None = None) -> None:
        self.config = config
        self.enricher = enricher  # container columns and labels, added before the sinks
        self.catalog = catalog
        self.sinks: list[Sink] = list(sinks or [])  # get every instance's data
        self.exports = exports  # builds each instance's own export handlers
        self.on_ready = on_ready
        self.watchers: dict[str, Watcher] = {}
        self.stats = SupervisorStats()
        self._ids = itertools.count(1)
        self._stop = asyncio.Event()
        self._ctx: zmq.asyncio.Context | None = None
        self._events_sock: zmq.asyncio.Socket | None = None
        self._control_sock: zmq.asyncio.Socket | None = None
        self.endpoints: Endpoints | None = None
        self._next_self_metrics = 0.0
        # The containers known now (the container registry's view), for the cgroup filters.
        self.containers: Callable[[], list[ContainerRef]] = containers or list
        self.cgroup_root = unified_root()
        self._next_filter_refresh = 0.0
        self.isolation = Isolation(config.isolation)  # limits of untrusted tracers' workers
        #: starts the first instances once the IPC sockets are bound; default: the configured tracers
        self.startup: Callable[[], None] = self._start_configured

    # -- public operations (called on the loop, e.g. by the API) ---------------------
    def start_instance(self, tracer_name: str, args: dict[str, Any] | list[str] | None = None,
                       instance_id: str | None = None,
                       export_handlers: list[dict[str, Any]] | None = None, start: bool = True) -> Watcher:
        """Validate and start a new instance. Raises KeyError (tracer), ArgsError, ExportConfigError,
        Conflict. ``export_handlers`` None means the agent's default handlers. ``start=False``: the
        instance is created stopped (``restart_instance`` starts it)."""
        tracer = self.catalog.get(tracer_name)
        values = tracer_args.resolve(tracer.spec, args)
        cgroup_filter = CgroupFilter.from_values(values)
        if cgroup_filter is not None:
            cgroup_filter.resolve(self.containers(), self.cgroup_root)  # a --cgroup that is not there: ArgsError
        if instance_id is None:
            instance_id = f"{tracer.name}-{next(self._ids)}"
            while instance_id in self.watchers:
                instance_id = f"{tracer.name}-{next(self._ids)}"
        elif instance_id in self.watchers:
            raise Conflict(f"instance {instance_id!r} already exists")
        export = self.exports.open(instance_id, tracer, export_handlers) if self.exports is not None else None
        watcher = Watcher(
            id=instance_id, tracer=tracer, args=args if args is not None else {}, values=values,
            history=CrashHistory(self.config.backoff), log_path=self.config.log_dir / f"{instance_id}.log",
            cgroup_filter=cgroup_filter,
            export=export,
        )
        self.watchers[instance_id] = watcher
        if start:
            try:
                self._spawn(watcher)
            except ValueError:  # arguments a probe cannot take (ArgsError): nothing of it stays
                self._forget(watcher)
                raise
        return watcher

    def get(self, instance_id: str) -> Watcher:
        try:
            return self.watchers[instance_id]
        except KeyError:
            raise NotFound(f"no instance {instance_id!r}") from None

    def stop_instance(self, instance_id: str, remove: bool = False) -> Watcher:
        watcher = self.get(instance_id)
        watcher.remove_when_stopped = remove
        if watcher.state in (State.STARTING, State.RUNNING):
            watcher.sm.to(State.STOPPING)
            watcher.stop_deadline = time.monotonic() + self.config.stop_timeout
            self._send(watcher, FrameType.STOP)
            if watcher.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    watcher.proc.send_signal(signal.SIGTERM)
        elif watcher.state in (State.BACKOFF, State.FATAL):
            watcher.sm.to(State.STOPPED)
        if watcher.state is State.STOPPED and remove:
            self._forget(watcher)
        return watcher

    def restart_instance(self, instance_id: str) -> Watcher:
        watcher = self.get(instance_id)
        if watcher.state in (State.STARTING, State.RUNNING, State.STOPPING):
            raise Conflict(f"instance {instance_id} is {watcher.state.value}; stop it first")
        watcher.history.times.clear()
        watcher.history.reset_streak()
        watcher.last_error = None
        self._spawn(watcher)
        return watcher

    def refresh_filters(self) -> None:
        """Recompute every instance's cgroup filter (containers came or went) and send the
        sets that changed to their workers. Safe to call often: only changes are sent."""
        containers = None
        for watcher in self.watchers.values():
            if watcher.cgroup_filter is None or watcher.state not in (State.STARTING, State.RUNNING):
                continue
            containers = self.containers() if containers is None else containers
            try:
                ids = frozenset(watcher.cgroup_filter.resolve(containers, self.cgroup_root))
            except ValueError as exc:  # the --cgroup directory is gone: keep the last set
                watcher.last_error = f"cgroup filter: {exc}"
                continue
            if ids != watcher.cgroup_ids:
                watcher.cgroup_ids = ids
                self._send(watcher, FrameType.FILTER, {"cgroups": sorted(ids)})

    def request_shutdown(self) -> None:
        self._stop.set()

    @property
    def shutdown_requested(self) -> bool:
        return self._stop.is_set()

    def summary(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for w in self.watchers.values():
            states[w.state.value] = states.get(w.state.value, 0) + 1
        return {"instances": len(self.watchers), "states": states, "bad_frames": self.stats.bad_frames,
                "last_bad_frame": self.stats.last_bad_frame,
                "unknown_instance_frames": self.stats.unknown_instance_frames,
                "uptime_seconds": time.time() - self.stats.started_at, "pid": os.getpid()}

    def describe(self, watcher: Watcher) -> dict[str, Any]:
        info = watcher.to_dict()
        info["drops"]["store"] = sum(s.dropped(watcher.id) for s in self.sinks)
        info["export_handlers"] = []
        if watcher.export is not None:
            for hop, n in watcher.export.drops().items():
                info["drops"][hop] += n
            info["export_handlers"] = watcher.export.describe()
        info["isolation"] = self.isolation.describe(watcher)
        return info

    # -- export routing: each instance's data goes to the global sinks and its own handlers only
    def _route(self, watcher: Watcher) -> list[Sink]:
        return [*self.sinks, watcher.export] if watcher.export is not None else self.sinks

    def _forget(self, watcher: Watcher) -> None:
        self.watchers.pop(watcher.id, None)
        if watcher.export is not None:
            watcher.export.close()

    # -- lifecycle -------------------------------------------------------------------
    async def run(self, extra_tasks: list[Any] | None = None) -> None:
        cfg = self.config
        ensure_private_dir(cfg.runtime_dir)
        ensure_private_dir(cfg.log_dir)
        self.endpoints = Endpoints.in_dir(cfg.runtime_dir)
        for path in (cfg.runtime_dir / "events.sock", cfg.runtime_dir / "control.sock"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by an agent that was killed
        self._ctx = zmq.asyncio.Context()
        self._events_sock, self._control_sock = bind_supervisor(self._ctx, self.endpoints)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        self.startup()
        self._maybe_ready()  # no default tracer, or none could be spawned
        tasks = [asyncio.create_task(coro) for coro in
                 (self._events_loop(), self._control_loop(), self._tick_loop(), *(extra_tasks or []))]
        try:
            await self._stop.wait()
        finally:
            await self._shutdown()
            self.isolation.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._events_sock.close(0)
            self._control_sock.close(0)
            self._ctx.term()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _start_configured(self) -> None:
        for request in self.config.default_tracers:
            try:
                self.start_instance(request.tracer, request.args, request.instance_id,
                                    export_handlers=[h.model_dump() for h in request.export_handlers] or None)
            except (KeyError, ValueError, Conflict) as exc:
                log.error("default tracer %s not started: %s", request.tracer, exc)

    async def _shutdown(self) -> None:
        for watcher in list(self.watchers.values()):
            if watcher.state in (State.STARTING, State.RUNNING):
                self.stop_instance(watcher.id)
        deadline = time.monotonic() + self.config.stop_timeout
        while time.monotonic() < deadline and any(w.exited() is None for w in self.watchers.values() if w.proc):
            self._reap()
            await asyncio.sleep(0.05)
        for watcher in self.watchers.values():
            if watcher.proc is not None and watcher.proc.poll() is None:
                watcher.proc.kill()
                watcher.proc.wait()
        self._reap()

    # -- spawning and reaping --------------------------------------------------------
    def _spawn(self, watcher: Watcher) -> None:
        cfg = self.config
        assert self.endpoints is not None
        if watcher.cgroup_filter is not None:
            try:
                watcher.cgroup_ids = frozenset(watcher.cgroup_filter.resolve(self.containers(), self.cgroup_root))
            except ValueError as exc:
                watcher.last_error = f"cgroup filter: {exc}"
        try:
            isolation = self.isolation.plan_options(watcher)
        except ValueError as exc:  # a tracer the isolation policy refuses to run
            watcher.last_error = f"isolation: {exc}"
            watcher.sm.to(State.STARTING)
            watcher.sm.to(State.FATAL)
            return
        plan = watcher.tracer.plan(  # raises ArgsError for arguments a probe cannot take (a 400 at start)
            watcher.id, watcher.args, events_endpoint=self.endpoints.events,
            control_endpoint=self.endpoints.control, supervisor_pid=os.getpid(),
            heartbeat_interval=cfg.heartbeat_interval, heartbeat_timeout=cfg.worker_supervisor_timeout,
            batch_interval=cfg.batch_interval, batch_max=cfg.batch_max, metrics_interval=cfg.metrics_interval,
            cgroup_ids=sorted(watcher.cgroup_ids), **isolation,
        )
        watcher.sm.to(State.STARTING)
        try:
            watcher.spawn(plan, confine=lambda pid: self.isolation.confine(watcher, pid))
        except OSError as exc:
            watcher.last_error = f"cannot start the worker process: {exc}"
            watcher.sm.to(State.FATAL)
            return
        watcher.next_hb_out = 0.0
        log.info("%s: worker %d started", watcher.id, watcher.proc.pid if watcher.proc else -1)

    def _reap(self) -> None:
        for watcher in list(self.watchers.values()):
            if watcher.proc is None or watcher.state not in PROCESS_STATES:
                continue
            code = watcher.exited()
            if code is not None:
                self._on_exit(watcher, code)
                self._maybe_ready()  # a default tracer that failed to start has had its attempt

    def _on_exit(self, watcher: Watcher, code: int) -> None:
        watcher.fold_counters()
        watcher.proc = None
        watcher.kill_reason = self.isolation.exit_reason(watcher, code) or watcher.kill_reason
        if watcher.state is State.STOPPING:
            watcher.sm.to(State.STOPPED)
            if watcher.remove_when_stopped:
                self._forget(watcher)
            return
        message = watcher.crash_message(code)
        now = time.monotonic()
        unexplained = code not in (0, EXIT_PERMANENT) and not watcher.permanent_error and not watcher.kill_reason
        if watcher.state is State.STARTING and watcher.hello_at is not None and code > 0 and unexplained:
            # Exited (not killed) between hello and ready: the compile or load path itself
            # failed (LLVM aborts the process on some errors). Deterministic: no retry loop.
            message = f"load: the worker stopped while compiling or loading ({message})"
            watcher.permanent_error = True
        if code == EXIT_PERMANENT or watcher.permanent_error:
            watcher.last_error = message
            watcher.sm.to(State.FATAL)
            log.error("%s: fatal: %s", watcher.id, message)
            return
        watcher.last_error = message
        watcher.history.record(now)
        if watcher.history.exhausted():
            policy = self.config.backoff
            watcher.last_error = (f"gave up after {len(watcher.history.times)} crashes within "
                                  f"{policy.window:.0f}s; last: {message}")
            watcher.sm.to(State.FATAL)
            log.error("%s: fatal: %s", watcher.id, watcher.last_error)
            return
        delay = watcher.history.next_delay()
        watcher.backoff_until = now + delay
        watcher.sm.to(State.BACKOFF)
        log.warning("%s: %s; restarting in %.1fs", watcher.id, describe_exit(code), delay)

    # -- loops -----------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            try:
                self._tick(time.monotonic())
            except Exception:  # never let bookkeeping kill the supervisor
                log.exception("tick failed")
            await asyncio.sleep(TICK)

    def _tick(self, now: float) -> None:
        cfg = self.config
        self._reap()
        for watcher in list(self.watchers.values()):
            state = watcher.state
            if state in (State.STARTING, State.RUNNING) and now >= watcher.next_hb_out:
                self._send(watcher, FrameType.HEARTBEAT)
                watcher.next_hb_out = now + cfg.heartbeat_interval
            if state is State.RUNNING:
                if now - watcher.last_hb > cfg.heartbeat_timeout:
                    self._kill(watcher, f"no heartbeat for {now - watcher.last_hb:.1f}s (stopped or hung); killed")
                elif watcher.ready_at and now - watcher.ready_at > cfg.stable_after:
                    watcher.history.reset_streak()
            elif state is State.STARTING and now - watcher.spawned_at > cfg.start_timeout:
                self._kill(watcher, f"not ready after {cfg.start_timeout:.0f}s (compile or attach hung); killed")
            elif state is State.STOPPING and now > watcher.stop_deadline and watcher.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    watcher.proc.kill()
            elif state is State.BACKOFF and now >= watcher.backoff_until:
                watcher.restarts += 1
                self._spawn(watcher)
        if now >= self._next_filter_refresh:  # also driven by container events, when there is a source
            self.refresh_filters()
            self._next_filter_refresh = now + FILTER_REFRESH
        for watcher, reason in self.isolation.tick(now, self.watchers):
            self._kill(watcher, reason, permanent=True)
        if now >= self._next_self_metrics:
            self._self_metrics()
            self._next_self_metrics = now + cfg.metrics_interval

    def _kill(self, watcher: Watcher, reason: str, permanent: bool = False) -> None:
        """SIGKILL the worker; ``permanent``: the instance goes fatal instead of restarting."""
        watcher.kill_reason = reason
        watcher.permanent_error = watcher.permanent_error or permanent
        if watcher.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                watcher.proc.kill()
        log.warning("%s: %s", watcher.id, reason)

    def _self_metrics(self) -> None:
        ts = time.time_ns()
        for watcher in self.watchers.values():
            labels = {"instance": watcher.id, "tracer": watcher.tracer.name}
            info = self.describe(watcher)
            samples = [("eunomia_instance_events_total", labels, float(watcher.events_received)),
                       ("eunomia_instance_restarts_total", labels, float(watcher.restarts))]
            samples += [("eunomia_instance_dropped_total", {**labels, "hop": hop}, float(n))
                        for hop, n in info["drops"].items()]
            for sink in self._route(watcher):
                sink.samples(watcher.id, ts, samples)

    async def _events_loop(self) -> None:
        assert self._events_sock is not None
        while True:
            data = await self._events_sock.recv()
            frame = self._decode(data)
            if frame is None:
                continue
            watcher = self.watchers.get(frame.instance)
            if watcher is None:
                self.stats.unknown_instance_frames += 1
                continue
            if frame.type is FrameType.EVENTS:
                rows = frame.payload["rows"]
                watcher.events_received += len(rows)
                if self.enricher is not None:
                    frame.payload["cols"] = self.enricher.events(frame.payload["cols"], rows)
                for sink in self._route(watcher):
                    sink.events(watcher.id, watcher.tracer.name, frame.payload["cols"], rows)
            elif frame.type is FrameType.METRICS:
                samples = flatten_samples(frame.payload.get("samples") or [],
                                          {"instance": watcher.id, "tracer": watcher.tracer.name})
                if self.enricher is not None:
                    samples = self.enricher.samples(samples)
                ts = frame.payload.get("ts") if isinstance(frame.payload.get("ts"), int) else time.time_ns()
                for sink in self._route(watcher):
                    sink.samples(watcher.id, ts, samples)
            else:
                self._bad(f"{frame.type.value} frame on the events channel")

    async def _control_loop(self) -> None:
        assert self._control_sock is not None
        while True:
            parts = await self._control_sock.recv_multipart()
            if len(parts) != 2:
                self._bad(f"control message with {len(parts)} parts")
                continue
            identity, data = parts
            frame = self._decode(data)
            if frame is None:
                continue
            watcher = self.watchers.get(frame.instance)
            if watcher is None or identity != frame.instance.encode():
                self.stats.unknown_instance_frames += 1
                continue
            self._on_control(watcher, frame)

    def _on_control(self, watcher: Watcher, frame: Frame) -> None:
        now = time.monotonic()
        payload = frame.payload
        if watcher.state not in (State.STARTING, State.RUNNING, State.STOPPING):
            return  # a late frame from a worker we already gave up on
        watcher.last_hb = now
        if frame.type is FrameType.HELLO:
            watcher.hello_at = now
        elif frame.type is FrameType.READY and watcher.state is State.STARTING:
            watcher.ready_at = now
            watcher.sm.to(State.RUNNING)
            log.info("%s: running (%.2fs to attach)", watcher.id, now - watcher.spawned_at)
            self._maybe_ready()
        elif frame.type is FrameType.HEARTBEAT:
            watcher.worker = {k: v for k, v in payload.items() if isinstance(v, (int, float, str))}
        elif frame.type is FrameType.ERROR:
            kind, message = str(payload.get("kind", "error")), str(payload.get("message", ""))
            watcher.last_error = f"{kind}: {message}"
            watcher.last_error_log = str(payload.get("log", ""))
            watcher.permanent_error = bool(payload.get("permanent", False))

    def _maybe_ready(self) -> None:
        """Call on_ready once, when no instance is starting any more: each default tracer is
        running, or has failed its first attempt (then it is in backoff or fatal)."""
        if self.on_ready is None:
            return
        if all(w.state is not State.STARTING for w in self.watchers.values()):
            callback, self.on_ready = self.on_ready, None
            callback()

    def _send(self, watcher: Watcher, type_: FrameType, payload: dict[str, Any] | None = None) -> None:
        assert self._control_sock is not None
        with contextlib.suppress(zmq.Again, zmq.ZMQError):
            self._control_sock.send_multipart([watcher.id.encode(), encode(type_, watcher.id, payload)], zmq.NOBLOCK)

    def _decode(self, data: bytes) -> Frame | None:
        try:
            return decode(data)
        except FrameError as exc:
            self._bad(str(exc))
            return None

    def _bad(self, reason: str) -> None:
        self.stats.bad_frames += 1
        self.stats.last_bad_frame = reason[:300]


__all__ = ["Conflict", "NotFound", "Supervisor"]
