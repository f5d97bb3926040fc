"""The admin app on its own port: metrics, health and readiness.

Kept apart from the proxy port so that the sidecar never shadows a path of
the model server, as Envoy keeps its admin listener apart. Handlers read
state; they compute no statistics at request time.
"""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.evaluator import DataMonitors, status_json
from sidecar.health import Readiness

__all__ = ["create_admin_app"]


def create_admin_app(registry: CollectorRegistry, readiness: Readiness, monitors: DataMonitors) -> Starlette:
    """Build the admin ASGI app over an explicit registry, the readiness check and the data monitors."""

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
        body = {
            "ready": report.ready,
            "reasons": list(report.reasons),
            "checked_at": report.checked_at,
            # Informational: learning a reference is no reason to refuse traffic,
            # since the traffic is what it learns from.
            "reference": status_json(monitors.snapshot.reference),
        }
        return JSONResponse(body, status_code=200 if report.ready else 503)

    async def drift(request: Request) -> Response:
        snapshot = monitors.snapshot
        body = {
            "evaluated_at": snapshot.taken_at,
            "reference": status_json(snapshot.reference),
            "drift": snapshot.drift,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def quality(request: Request) -> Response:
        snapshot = monitors.snapshot
        body = {
            "evaluated_at": snapshot.taken_at,
            "reference": status_json(snapshot.reference),
            "quality": snapshot.quality.to_json(),
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/api/v1/drift", drift, methods=["GET"]),
            Route("/api/v1/quality", quality, methods=["GET"]),
        ]
    )
