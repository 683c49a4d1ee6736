"""``GET /containers`` and ``GET /containers/{ref}``: what the agent knows of the host's containers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException

from supervisor.api.models import Container, ContainerList

if TYPE_CHECKING:
    from supervisor.containers.registry import KnownContainer
    from supervisor.containers.service import ContainerService

RESPONSES: dict[int | str, dict[str, str]] = {404: {"description": "no such container"},
                                              503: {"description": "container awareness is off (--no-containers)"}}


def _container(known: KnownContainer, now: float) -> Container:
    info = known.info.to_dict()
    info.update(source=known.info.runtime if known.source else "cgroup", cgroup_ids=list(known.cgroup_ids),
                removed_seconds_ago=None if known.removed_at is None else round(now - known.removed_at, 3))
    return Container(**info)


def router(service: ContainerService | None) -> APIRouter:
    api = APIRouter(tags=["containers"])

    def _service() -> ContainerService:
        if service is None:
            raise HTTPException(503, "container awareness is off in this agent (--no-containers)")
        return service

    @api.get("/containers", response_model=ContainerList, responses=RESPONSES)
    async def list_containers() -> ContainerList:
        s = _service()
        now = s.registry.now()
        known = sorted(s.registry.containers(), key=lambda k: (k.removed_at is not None, k.info.name or "", k.info.id))
        return ContainerList(containers=[_container(k, now) for k in known], cache=s.summary())

    @api.get("/containers/{ref}", response_model=Container, responses=RESPONSES)
    async def get_container(ref: str) -> Container:
        """By full id, unique id prefix, or name."""
        s = _service()
        found = s.registry.find(ref)
        if found is None:
            raise HTTPException(404, f"no container {ref!r} (by id, unique id prefix or name)")
        return _container(found, s.registry.now())

    return api
