"""``GET /metrics`` in Prometheus's text format (or OpenMetrics, when the scraper asks for it).

The control app serves it on the unix socket; :func:`create_metrics_app` is the app for the
optional TCP listener, with that one read-only route and nothing else.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def metrics_response(registry: CollectorRegistry, accept: str | None) -> Response:
    encoder, content_type = choose_encoder(accept or "")
    return Response(encoder(registry), media_type=None, headers={"Content-Type": content_type})


def create_metrics_app(registry: CollectorRegistry) -> Starlette:
    async def metrics(request: Request) -> Response:
        return metrics_response(registry, request.headers.get("accept"))

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
