"""The admin port in process mode: served by the serving process, the monitoring part asked of the other.

``/healthz``, ``/readyz`` and the runtime flags are answered here
(:mod:`sidecar.admin.serving`), so probes and the switch to the fallback
model never depend on the monitoring process. ``/metrics`` is this process's
families followed by the monitoring process's, which renders its own, so a
scrape of the drift and quality families costs the proxy nothing. Every other
path is forwarded to the monitoring process's admin app, which answers it as
in inline mode; while that process restarts they answer 503 with ``Retry-After``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.admin.health import Readiness
from sidecar.admin.requests import error, read_limited
from sidecar.admin.serving import serving_routes
from sidecar.plane.supervisor import MonitorLink, MonitorUnavailable
from sidecar.serving.flags import Flags

__all__ = ["create_front_app"]

# Below Prometheus's default scrape timeout (10 s): a stuck monitoring process costs a scrape
# its monitoring families, never the serving ones.
_SCRAPE_TIMEOUT = 8.0
_CALL_TIMEOUT = 30.0
_OPENMETRICS_EOF = b"# EOF\n"
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def create_front_app(
    registry: CollectorRegistry,
    readiness: Readiness,
    flags: Flags,
    link: MonitorLink,
    *,
    admin_token: str | None,
    body_max_bytes: int,
) -> Starlette:
    """The admin app of the serving process; ``registry`` holds this process's families.

    Usage::

        app = create_front_app(registry, readiness, flags, link, admin_token=None, body_max_bytes=1 << 20)
    """

    async def metrics(request: Request) -> Response:
        accept = request.headers.get("accept", "")
        encoder, content_type = choose_encoder(accept)
        body = encoder(registry)
        try:
            theirs, _ = await link.call("metrics", accept, timeout=_SCRAPE_TIMEOUT)
        except MonitorUnavailable:
            # mlsidecar_monitor_up says why the monitoring families are missing.
            return Response(body, media_type=content_type)
        if body.endswith(_OPENMETRICS_EOF):
            # One exposition, one end marker: theirs carries it.
            body = body[: -len(_OPENMETRICS_EOF)]
        return Response(body + theirs, media_type=content_type)

    async def forward(request: Request) -> Response:
        body = await read_limited(request, body_max_bytes)
        if body is None:
            return error(413, f"the body is larger than {body_max_bytes} bytes")
        payload = (request.method, request.url.path, request.scope["query_string"], request.headers.raw, body)
        try:
            reply = await link.call("http", payload, timeout=_CALL_TIMEOUT)
        except MonitorUnavailable as exc:
            response = error(503, f"monitoring is not available right now ({exc}); serving is unaffected, retry")
            response.headers["retry-after"] = "1"
            return response
        if isinstance(reply, str):
            return error(500, f"the monitoring process failed on this request ({reply}); see its log")
        status, headers, content = reply
        response = Response(content, status_code=status)
        response.raw_headers = list(headers)
        return response

    return Starlette(
        routes=[
            *serving_routes(readiness, flags, monitoring=link.monitoring_json, admin_token=admin_token),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/{path:path}", forward, methods=_METHODS),
        ]
    )
