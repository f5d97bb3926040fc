"""The admin app on its own port: metrics, health and readiness.

Kept apart from the proxy port so that the sidecar never shadows a path of
the model server, as Envoy keeps its admin listener apart. Handlers read
state; they compute no statistics at request time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.health import Readiness

__all__ = ["create_admin_app"]


def create_admin_app(registry: CollectorRegistry, readiness: Readiness) -> Starlette:
    """Build the admin ASGI app over an explicit registry and readiness check."""

    async def metrics(request: Request) -> Response:
        # Prometheus text by default, OpenMetrics when the scraper asks for it.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    async def healthz(request: Request) -> Response:
        # Answering at all proves the process and its event loop are alive;
        # liveness must not depend on the upstream, or a slow model gets the
        # healthy sidecar restarted.
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        report = await readiness.check()
        body = {"ready": report.ready, "reasons": list(report.reasons), "checked_at": report.checked_at}
        return JSONResponse(body, status_code=200 if report.ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
