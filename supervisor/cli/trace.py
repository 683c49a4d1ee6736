"""``eunomiactl trace``: run one tracer and print its events live, like the bcc tool.

It needs no running agent: it runs its own supervisor with the one instance, in a
private runtime directory, and prints instead of storing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import typer

from supervisor.arbiter import Supervisor
from supervisor.cli import flamegraph
from supervisor.cli.client import fail
from supervisor.cli.metrics_view import MetricsView
from supervisor.config import AgentConfig, ContainerSettings, InstanceRequest
from supervisor.containers.info import EVENT_COLUMNS
from supervisor.containers.service import ContainerService
from supervisor.sinks import Sample
from supervisor.states import State
from workers import args as tracer_args
from workers.args import ArgsError
from workers.catalog import Catalog, default_search_path

_SKIP_HUMAN = {"ts", "pid", "comm", "tid", "uid", "gid", "cgroup_id", *EVENT_COLUMNS}


class PrintSink:
    """Events and metrics to stdout. Metrics keyed by stacks (``stack_metrics``: metric →
    the labels that make its folded line) are kept and written once at the end instead,
    as folded stacks or a flame graph, when asked for."""

    def __init__(self, tracer: str, as_json: bool, view: MetricsView,
                 stack_metrics: dict[str, list[str]] | None = None, folded: bool = False,
                 flamegraph: Path | None = None) -> None:
        self.tracer = tracer
        self.as_json = as_json
        self.view = view
        self.out = sys.stdout.buffer
        self.stack_metrics = stack_metrics or {}
        self.folded = folded
        self.flamegraph = flamegraph
        self.stacks: dict[str, dict[str, float]] = {}  # metric → folded stack → value

    def events(self, instance: str, tracer: str, columns: list[str], rows: list[list[Any]]) -> None:
        lines = []
        for row in rows:
            event = {c: v for c, v in zip(columns, row, strict=True) if v is not None}
            event["tracer"] = tracer
            if self.as_json:
                lines.append(orjson.dumps(event))
            else:
                when = dt.datetime.fromtimestamp(event["ts"] / 1e9).strftime("%H:%M:%S.%f")[:-3]
                rest = " ".join(f"{k}={_human(v)}" for k, v in event.items() if k not in _SKIP_HUMAN | {"tracer"})
                if event.get("container_id"):  # host processes: nothing, as before
                    rest += f" container={_human(event.get('container_name') or event['container_id'][:12])}"
                lines.append(f"{when} {event['pid']:>7} {event['comm']:<16} {rest}".encode())
        self.out.write(b"\n".join(lines) + b"\n")
        self.out.flush()

    def samples(self, instance: str, ts: int, samples: list[Sample]) -> None:
        if self.folded or self.flamegraph:
            for metric in self.stack_metrics:  # cumulative totals: the latest read replaces the previous one
                kept: dict[str, float] = {}
                for name, labels, value in samples:
                    if name == metric:  # series that fold alike (other pid, tid, cgroup) add up
                        stack = self._fold(name, labels)
                        kept[stack] = kept.get(stack, 0.0) + value
                if kept:
                    self.stacks[metric] = kept
            samples = [s for s in samples if s[0] not in self.stack_metrics]
        if self.as_json:
            records = [{**r, "tracer": self.tracer} for r in self.view.records(ts, samples)]
            if records:
                self.out.write(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
        else:
            text = self.view.render(ts, samples)
            if text:
                self.out.write(text.encode() + b"\n")
        self.out.flush()

    def dropped(self, instance: str) -> int:
        return 0

    def _fold(self, metric: str, labels: dict[str, str]) -> str:
        return ";".join(part for name in self.stack_metrics[metric] if (part := labels.get(name, "")))

    def finish(self, title: str) -> None:
        """Folded stacks of every stack metric (a '# metric' line before each when there are
        several); the flame graph draws the tracer's first stack metric."""
        metrics = [m for m in self.stack_metrics if m in self.stacks]
        if self.folded:
            lines = []
            for metric in metrics:
                if len(metrics) > 1:
                    lines.append(f"# {metric}")
                lines += [f"{stack} {_number(count)}" for stack, count in sorted(self.stacks[metric].items()) if count]
            self.out.write("".join(line + "\n" for line in lines).encode())
            self.out.flush()
        if self.flamegraph:
            first = self.stacks.get(metrics[0], {}) if metrics else {}
            self.flamegraph.write_text(flamegraph.render(first, f"{title} — {metrics[0] if metrics else ''}"))
            typer.echo(f"wrote {self.flamegraph} ({_number(sum(first.values()))} in all)", err=True)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _human(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value) if value else "[]"
    text = str(value)
    return f'"{text}"' if " " in text else text


def trace(
    ctx: typer.Context,
    tracer: str = typer.Argument(..., help="tracer name; its options follow (see `eunomiactl tracers show NAME`)"),
    duration: float = typer.Option(None, "--duration", help="stop after this many seconds"),
    interval: float = typer.Option(None, "--interval", "-i",
                                   help="print the kernel's counters and histograms every S seconds "
                                        "[default: 5 for tracers without events; otherwise only at the end]"),
    top: int = typer.Option(10, "--top", help="rows per counter table (0: all)"),
    cumulative: bool = typer.Option(False, help="print totals since the start, not the change per interval"),
    folded: bool = typer.Option(False, "--folded", help="stack metrics (profile …): print folded stacks at the end"),
    flamegraph_svg: Path = typer.Option(None, "--flamegraph", help="stack metrics: write a flame graph SVG here"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line, with the documented field names"),
    tracer_path: list[Path] = typer.Option(None, help="extra folder with tracers (repeatable)"),
    docker_socket: str = typer.Option(None, help="Docker Engine API for container names "
                                      "[default: $DOCKER_HOST, then /var/run/docker.sock]"),
) -> None:
    """Run one tracer and print its events until Ctrl-C or --duration."""
    search = [*default_search_path(), *(tracer_path or [])]
    catalog = Catalog.discover(search)
    try:
        spec = catalog.get(tracer).spec
        tracer_args.resolve(spec, list(ctx.args))
    except KeyError as exc:
        fail(exc.args[0], 2)
    except ArgsError as exc:
        fail(str(exc), 2)
    logging.getLogger("eunomia").setLevel(logging.CRITICAL)  # failures are printed below, once
    if interval is None:
        interval = 5.0 if spec.event is None else 86400.0  # the final read still prints at exit
    runtime = Path(tempfile.mkdtemp(prefix="eunomia-trace-"))
    config = AgentConfig(runtime_dir=runtime, db_path=None, serve_api=False, tracer_path=search,
                         default_tracers=(InstanceRequest(tracer, list(ctx.args)),), metrics_interval=interval)
    stack_metrics = {f"eunomia_{m.name}": ["comm"] * any(lbl.name == "comm" for lbl in m.labels)
                     + [lbl.name for lbl in m.labels if lbl.stack]  # comm, then user frames, then kernel frames
                     for m in spec.metrics if any(lbl.stack for lbl in m.labels)}
    sink = PrintSink(tracer, as_json, MetricsView(top, cumulative), stack_metrics, folded, flamegraph_svg)
    containers = ContainerService.create(ContainerSettings(docker_host=docker_socket))
    containers.start()
    supervisor = Supervisor(config, catalog, [sink], enricher=containers.enricher, containers=containers.refs)
    try:
        code = asyncio.run(_trace(supervisor, duration, containers))
        sink.finish(f"{tracer} {' '.join(ctx.args)}".strip())
    finally:
        containers.stop()
        shutil.rmtree(runtime, ignore_errors=True)
    raise typer.Exit(code)


async def _trace(supervisor: Supervisor, duration: float | None, containers: ContainerService) -> int:
    containers.follow(asyncio.get_running_loop(), supervisor.refresh_filters)  # --container & co. follow at once

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration if duration else None
        reported: dict[str, str | None] = {}
        announced = False
        while deadline is None or loop.time() < deadline:
            await asyncio.sleep(0.1)
            for watcher in supervisor.watchers.values():
                if watcher.state is State.RUNNING and not announced:
                    announced = True
                    typer.echo(f"Tracing with {watcher.tracer.name}... Hit Ctrl-C to end.", err=True)
                if watcher.state is State.BACKOFF and reported.get(watcher.id) != watcher.last_error:
                    reported[watcher.id] = watcher.last_error
                    typer.secho(f"warning: worker {watcher.last_error}; restarting", err=True,
                                fg=typer.colors.YELLOW)
                if watcher.state is State.FATAL:
                    typer.secho(f"error: {watcher.last_error}", err=True, fg=typer.colors.RED)
                    if watcher.last_error_log:
                        typer.echo(watcher.last_error_log, err=True)
                    supervisor.request_shutdown()
                    return
        supervisor.request_shutdown()

    await supervisor.run(extra_tasks=[watch()])
    return 1 if any(w.state is State.FATAL for w in supervisor.watchers.values()) else 0
