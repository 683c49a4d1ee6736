"""``GET /desired`` and ``PUT /desired``: the agent's desired state as one document (docs/operations.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from supervisor.desired import DesiredState, DocumentError
from supervisor.desired.document import InstanceDoc


class DesiredDocument(BaseModel):
    version: int = 1
    instances: list[InstanceDoc]


class ApplyResult(BaseModel):
    id: str
    tracer: str
    action: str = Field(description="created, updated, unchanged, removed (prune), kept (not listed, no prune) "
                        "or failed")
    changes: list[str] = Field(description="for updated: the fields that differ (tracer, args, export_handlers, "
                               "state); a change of the first three restarts the instance")
    state: str | None = Field(description="the instance's state after the change; null when it has none")
    error: str | None = Field(description="why it failed")


class ApplyReport(BaseModel):
    dry_run: bool
    prune: bool
    results: list[ApplyResult]
    summary: dict[str, int] = Field(description="how many instances per action")


class DocumentProblem(BaseModel):
    index: int | None
    id: str | None
    field: str
    message: str


class DocumentRefused(BaseModel):
    detail: str
    problems: list[DocumentProblem]


EXAMPLE = {"instances": [
    {"id": "failed-opens", "tracer": "opensnoop", "args": {"failed": True},
     "export_handlers": [{"name": "sqlite"}, {"name": "file", "args": ["/var/log/eunomia/opens.jsonl"]}]},
    {"id": "exec", "tracer": "process", "args": [], "state": "stopped"},
]}


def router(desired: DesiredState) -> APIRouter:
    api = APIRouter(tags=["desired state"])

    @api.get("/desired", response_model=DesiredDocument, response_model_exclude_unset=True,
             summary="The desired state: every instance with its arguments, export handlers and state")
    async def get_desired() -> dict[str, Any]:
        return desired.document()

    @api.put("/desired", response_model=ApplyReport,
             responses={400: {"model": DocumentRefused, "description": "the document was refused; nothing changed"}},
             summary="Apply a desired-state document: create, update (restart), stop or remove instances")
    async def put_desired(
        document: Annotated[dict[str, Any], Body(description="{version: 1, instances: [{id, tracer, args, "
                                                 "export_handlers, state}]}", examples=[EXAMPLE])],
        prune: Annotated[bool, Query(description="also remove the instances the document does not list")] = False,
        dry_run: Annotated[bool, Query(description="report what would change, change nothing")] = False,
    ) -> Any:
        try:
            return await desired.apply(document, prune=prune, dry_run=dry_run)
        except DocumentError as exc:
            return JSONResponse(status_code=400, content={"detail": str(exc),
                                                          "problems": [p.to_dict() for p in exc.problems]})

    return api
