"""``POST /tracers`` and ``DELETE /tracers/{name}``: tracers added to and removed from a running agent.

``POST /tracers`` takes either a JSON body ``{"path": "/abs/folder"}`` naming a tracer folder
on the agent's host, or the bytes of a tar archive (gzip, bzip2, xz or plain; content type
``application/gzip``, ``application/x-tar`` or ``application/octet-stream``) holding one
tracer folder. With ``start=true`` it also starts an instance (``args`` are its options,
``id`` its id) and waits up to ``wait`` seconds for it to run; when it fails instead
(compiler, verifier, hook), the answer is 422 with the error and the compiler's or
verifier's lines, and the tracer is not kept.

Status codes: 201 added (200: the same folder was loaded already), 400 bad folder, archive or
spec (the message names the entry or the field), 403 disabled or not on the allow-list, 409
the name is taken, 413 too large, 415 neither JSON nor an archive, 422 the first instance
failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.api.models import Instance, TracerInfo
from supervisor.arbiter import Conflict, Supervisor
from supervisor.tracer_admin import Added, NotATracer, TracerAdmin, TracerConflict, failure_source
from supervisor.tracer_intake import IntakeError, TooLarge
from supervisor.tracer_policy import Refused
from workers.args import ArgsError
from workers.catalog import INCLUDE_DIR, Tracer
from workers.spec import SpecError

ARCHIVE_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar", "application/octet-stream",
                 "application/x-xz", "application/x-bzip2")
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad folder, archive or spec; the message names the entry or the field"},
    403: {"description": "adding tracers over the API is disabled, or the tracer is not on the allow-list"},
    404: {"description": "no such tracer"},
    409: {"description": "the name is taken, or the tracer has instances"},
    413: {"description": "the archive or folder is too large"},
    415: {"description": "neither JSON nor an archive"},
    422: {"description": "the first instance failed to compile, load or start (start=true)"},
}


class AddPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="absolute path of a tracer folder on the agent's host")
    args: dict[str, Any] | list[str] = Field(default_factory=dict, description="options of the instance (start=true)")


class TracerAdded(BaseModel):
    tracer: TracerInfo
    created: bool = Field(description="false when the same folder (same digest) was loaded already")
    instance: Instance | None = Field(default=None, description="the instance started with start=true")


class FirstStartFailed(BaseModel):
    detail: str
    kind: str = Field(description="compile, verifier, tracepoint, hook, … as in last_error")
    source: str | None = Field(description="file:line: the source line the compiler or verifier points at")
    log: list[str] = Field(description="the compiler's or verifier's relevant lines")
    instance: Instance
    tracer_kept: bool = Field(description="false: the tracer was added by this request and removed again")


def _status(exc: Exception) -> HTTPException:
    """The HTTP error for an expected failure; anything else is raised again as it is."""
    if isinstance(exc, Refused):
        return HTTPException(403, str(exc))
    if isinstance(exc, TooLarge):
        return HTTPException(413, str(exc))
    if isinstance(exc, (IntakeError, SpecError, ArgsError)):
        return HTTPException(400, str(exc))
    if isinstance(exc, (TracerConflict, Conflict)):
        return HTTPException(409, str(exc))
    if isinstance(exc, NotATracer):
        return HTTPException(404, exc.args[0])
    raise exc


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the archive is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the archive is more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def router(supervisor: Supervisor, tracer_info: Callable[[Tracer], TracerInfo]) -> APIRouter:
    admin = TracerAdmin(supervisor, supervisor.config.custom_tracers, supervisor.config.state_dir)
    api = APIRouter(tags=["tracers"])

    @api.post("/tracers", response_model=TracerAdded, status_code=201, responses=RESPONSES,
              summary="Add a tracer (a folder on the host, or an uploaded archive)")
    async def add_tracer(
        request: Request,
        start: Annotated[bool, Query(description="also start an instance and wait for it")] = False,
        wait: Annotated[float, Query(ge=0, le=300, description="seconds to wait for the instance")] = 60.0,
        args: Annotated[list[str] | None, Query(description="the instance's options (archives; "
                                                             "with a path, in the body)")] = None,
        instance_id: Annotated[str | None, Query(alias="id", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
                                                 description="the instance's id (start=true)")] = None,
    ) -> Any:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        instance_args: dict[str, Any] | list[str] = list(args or [])
        try:
            if content_type == "application/json":
                try:
                    body = AddPath.model_validate_json(await request.body())
                except ValidationError as exc:
                    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                                         for e in exc.errors())
                    raise HTTPException(400, problems) from None
                instance_args = body.args or instance_args
                added = await admin.add_path(body.path)
            elif content_type in ARCHIVE_TYPES:
                admin.policy.check_enabled()  # before reading megabytes
                added = await admin.add_archive(await _read_limited(request, admin.policy.intake.max_archive_bytes))
            else:
                raise HTTPException(415, f"content type {content_type or 'none'!r}: send JSON {{\"path\": …}} "
                                         f"or an archive ({', '.join(ARCHIVE_TYPES[:2])})")
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a status, or re-raised
            raise _status(exc) from None
        if not start:
            return _added(added, None, tracer_info)
        try:
            first = await admin.first_start(added.tracer.name, instance_args, instance_id, wait)
        except Exception as exc:  # noqa: BLE001 - bad options, taken id: mapped, and nothing kept
            if added.created:
                admin.rollback(added.tracer.name)
            raise _status(exc) from None
        instance = Instance(**supervisor.describe(first.watcher))
        if first.ok:
            return _added(added, instance, tracer_info)
        error = first.watcher.last_error or f"the instance is {first.watcher.state.value}"
        log = first.watcher.last_error_log or ""
        failed = FirstStartFailed(detail=error, kind=error.split(":", 1)[0] if ":" in error else "",
                                  source=failure_source(log, [added.tracer.folder, INCLUDE_DIR]),
                                  log=log.splitlines(), instance=instance, tracer_kept=not added.created)
        if added.created:
            admin.rollback(added.tracer.name)
        else:
            supervisor.stop_instance(first.watcher.id, remove=True)
        return JSONResponse(status_code=422, content=failed.model_dump(mode="json"))

    @api.delete("/tracers/{name}", status_code=204, responses=RESPONSES,
                summary="Remove a tracer that is not built in (force: its instances too)")
    async def remove_tracer(name: str, force: bool = False) -> None:
        try:
            admin.remove(name, force)
        except Exception as exc:  # noqa: BLE001 - mapped to a status, or re-raised
            raise _status(exc) from None

    return api


def _added(added: Added, instance: Instance | None, tracer_info: Callable[[Tracer], TracerInfo]) -> JSONResponse:
    body = TracerAdded(tracer=tracer_info(added.tracer), created=added.created, instance=instance)
    return JSONResponse(status_code=201 if added.created else 200, content=body.model_dump(mode="json"))
