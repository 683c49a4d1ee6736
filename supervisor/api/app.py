"""FastAPI application: instances, tracers, health, and queries on the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry

from supervisor import __version__
from supervisor.api import containers as containers_api
from supervisor.api import desired as desired_api
from supervisor.api import tracer_routes
from supervisor.api.metrics import metrics_response
from supervisor.api.models import (
    EunomiaStartRequest,
    ExportHandlerSpec,
    ExportHandlerType,
    Health,
    Instance,
    Parameter,
    StartRequest,
    TracerInfo,
)
from supervisor.arbiter import Conflict, NotFound, Supervisor
from supervisor.desired import DesiredState
from supervisor.export import ExportConfigError, handler_types
from supervisor.export.collector import agent_registry
from supervisor.store.reader import EventQuery, StoreReader
from supervisor.store.writer import StoreWriter
from workers import args as tracer_args
from workers.args import ArgsError
from workers.catalog import Tracer

if TYPE_CHECKING:
    from supervisor.containers.service import ContainerService

ERRORS: dict[int | str, dict[str, Any]] = {400: {"description": "bad arguments"},
                                            404: {"description": "no such tracer or instance"},
                                            409: {"description": "conflicts with the current state"}}


def _tracer_info(tracer: Tracer) -> TracerInfo:
    spec = tracer.spec
    return TracerInfo(
        name=spec.name, description=spec.description, builtin=tracer.builtin, folder=str(tracer.folder),
        origin=tracer.origin, digest=tracer.digest, source=tracer.source,
        probes=[f"{p.kind}:{p.target}" for p in spec.probes],
        parameters=[Parameter(name=p.name, type=p.type, flag=p.flag, long_flag=p.long_flag, default=p.default,
                              description=p.description) for p in tracer_args.parameters(spec)],
        fields=tracer.event_columns(), metrics=[m.name for m in spec.metrics],
    )


def create_app(supervisor: Supervisor, reader: StoreReader | None = None, writer: StoreWriter | None = None,
               metrics: CollectorRegistry | None = None, metrics_address: str | None = None,
               containers: ContainerService | None = None, desired: DesiredState | None = None) -> FastAPI:
    """``desired`` records (and saves) what the API changes; without it, the changes are kept in memory only."""
    app = FastAPI(title="Eunomia agent", version=__version__,
                  description="Control API of the Eunomia eBPF agent (unix socket, root only).")
    registry = metrics if metrics is not None else agent_registry(supervisor, writer)
    desired = desired if desired is not None else DesiredState(supervisor)
    app.include_router(containers_api.router(containers))
    app.include_router(tracer_routes.router(supervisor, _tracer_info))
    app.include_router(desired_api.router(desired))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = ["{}: {}".format(".".join(str(p) for p in e["loc"] if p != "body") or "body", e["msg"])
                    for e in exc.errors()]
        return JSONResponse(status_code=400, content={"detail": "; ".join(problems)})

    async def _start(tracer: str, args: dict[str, Any] | list[str], instance_id: str | None,
                     export_handlers: list[ExportHandlerSpec] | None) -> Instance:
        handlers = None if export_handlers is None else [h.model_dump() for h in export_handlers]
        try:
            watcher = await desired.start(tracer, args, instance_id, handlers)
        except (ArgsError, ExportConfigError) as exc:
            raise HTTPException(400, str(exc)) from None
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from None
        except KeyError as exc:
            raise HTTPException(404, exc.args[0]) from None
        return Instance(**supervisor.describe(watcher))

    def _instance(instance_id: str) -> Any:
        try:
            return supervisor.get(instance_id)
        except NotFound as exc:
            raise HTTPException(404, exc.args[0]) from None

    @app.get("/health", response_model=Health, tags=["agent"])
    async def health() -> Health:
        store = None
        if writer is not None:
            s = writer.stats
            store = {"path": str(writer.path), "events_written": s.events_written,
                     "samples_written": s.samples_written, "errors": s.errors, "last_error": s.last_error,
                     "dropped": sum(s.dropped.values()), "queued_rows": writer.queued_rows}
        summary = supervisor.summary()
        desired_health = desired.health()
        status = "ok" if not summary["states"].get("fatal") and not desired_health["problems"] else "degraded"
        return Health(status=status, version=__version__, store=store, metrics_address=metrics_address,
                      desired=desired_health,
                      tracer_errors={k: str(v) for k, v in supervisor.catalog.errors.items()}, **summary)

    @app.get("/metrics", tags=["agent"], response_class=Response,
             summary="Prometheus metrics: the instances' prometheus handlers, self-metrics, the agent's own")
    async def metrics_endpoint(request: Request) -> Response:
        return metrics_response(registry, request.headers.get("accept"))

    @app.get("/export-handlers", response_model=list[ExportHandlerType], tags=["instances"])
    async def list_export_handlers() -> list[ExportHandlerType]:
        out = []
        for kind in handler_types():
            reason = kind.availability()
            out.append(ExportHandlerType(name=kind.name, description=kind.description, buffered=kind.buffered,
                                         hop=kind.hop, available=reason is None, unavailable_reason=reason))
        return out

    @app.get("/tracers", response_model=list[TracerInfo], tags=["tracers"])
    async def list_tracers() -> list[TracerInfo]:
        return [_tracer_info(t) for t in supervisor.catalog.tracers.values()]

    @app.get("/tracers/{name}", response_model=TracerInfo, responses=ERRORS, tags=["tracers"])
    async def get_tracer(name: str) -> TracerInfo:
        try:
            return _tracer_info(supervisor.catalog.get(name))
        except KeyError as exc:
            raise HTTPException(404, exc.args[0]) from None

    @app.get("/instances", response_model=list[Instance], tags=["instances"])
    async def list_instances() -> list[Instance]:
        return [Instance(**supervisor.describe(w)) for w in supervisor.watchers.values()]

    @app.post("/instances", response_model=Instance, status_code=201, responses=ERRORS, tags=["instances"])
    async def start_instance(body: StartRequest) -> Instance:
        return await _start(body.tracer, body.args, body.id, body.export_handlers)

    @app.post("/start", response_model=Instance, status_code=201, responses=ERRORS, tags=["instances"],
              summary="Start a tracer (Eunomia's original API)")
    async def eunomia_start(body: EunomiaStartRequest) -> Instance:
        return await _start(body.name, body.args, None, body.export_handlers)

    @app.get("/instances/{instance_id}", response_model=Instance, responses=ERRORS, tags=["instances"])
    async def get_instance(instance_id: str) -> Instance:
        return Instance(**supervisor.describe(_instance(instance_id)))

    @app.post("/instances/{instance_id}/stop", response_model=Instance, responses=ERRORS, tags=["instances"])
    async def stop_instance(instance_id: str) -> Instance:
        _instance(instance_id)
        return Instance(**supervisor.describe(await desired.stop(instance_id)))

    @app.post("/instances/{instance_id}/restart", response_model=Instance, responses=ERRORS, tags=["instances"])
    async def restart_instance(instance_id: str) -> Instance:
        _instance(instance_id)
        try:
            return Instance(**supervisor.describe(await desired.restart(instance_id)))
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from None

    @app.delete("/instances/{instance_id}", status_code=204, responses=ERRORS, tags=["instances"])
    async def delete_instance(instance_id: str) -> None:
        try:
            await desired.remove(instance_id)
        except NotFound as exc:
            raise HTTPException(404, exc.args[0]) from None

    @app.get("/events", tags=["store"], responses={503: {"description": "no store configured"}})
    def events(
        tracer: str | None = None, instance: str | None = None, pid: int | None = None, comm: str | None = None,
        since: Annotated[int | None, Query(description="ns since the epoch")] = None,
        until: Annotated[int | None, Query(description="ns since the epoch")] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
    ) -> list[dict[str, Any]]:
        if reader is None:
            raise HTTPException(503, "this agent runs without a store")
        return reader.events(EventQuery(tracer, instance, pid, comm, since, until, limit))

    @app.get("/samples", tags=["store"], responses={503: {"description": "no store configured"}})
    def samples(
        name: str | None = None, instance: str | None = None,
        since: Annotated[int | None, Query(description="ns since the epoch")] = None,
        latest: Annotated[bool, Query(description="only the newest sample of each series")] = False,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[dict[str, Any]]:
        if reader is None:
            raise HTTPException(503, "this agent runs without a store")
        return reader.samples(name, since, limit, latest, instance)

    return app
