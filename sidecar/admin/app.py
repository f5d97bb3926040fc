"""The admin app on its own port: metrics, health, readiness, the JSON API and the labels endpoint.

Kept apart from the proxy port so that the sidecar never shadows a path of
the model server, as Envoy keeps its admin listener apart. Handlers read
the published snapshots and render them; they compute no statistics at
request time. The one write path, ``POST /api/v1/labels``, hands the parsed
items to the :class:`~sidecar.labels.ingest.LabelIngest`.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.admin.health import Readiness
from sidecar.alerting import AlertEngine
from sidecar.drift import DriftResult
from sidecar.labels.api import LabelRequestError, parse_labels
from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.labels.ingest import LabelIngest
from sidecar.labels.views import performance_json
from sidecar.monitoring.evaluator import DataMonitors, status_json
from sidecar.serving.flags import FLAGS, Flags
from sidecar.store import StoreError

__all__ = ["create_admin_app"]

logger = logging.getLogger("sidecar.admin.app")


def create_admin_app(
    registry: CollectorRegistry,
    readiness: Readiness,
    monitors: DataMonitors,
    labels: LabelIngest,
    performance: PerformanceEvaluator,
    alerts: AlertEngine,
    flags: Flags,
    *,
    admin_token: str | None,
    labels_max_bytes: int,
) -> Starlette:
    """Build the admin ASGI app over an explicit registry, the readiness check and the monitors.

    ``monitors`` and ``performance`` are read for their latest snapshots only;
    ``labels`` takes the posted labels.

    ``admin_token`` guards the endpoints that change state (``POST``); unset, they refuse every request.
    """

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
            # Informational too: on the fallback model the pod still serves.
            "flags": flags.to_json(),
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

    async def get_performance(request: Request) -> Response:
        body = performance_json(performance.snapshot)
        drift = monitors.snapshot.drift
        # Prediction and confidence drift answer "has the model's behaviour moved?" before labels come.
        body["output_drift"] = {
            "details": "/api/v1/drift",
            "outputs": [] if drift is None else [_output_drift(result) for result in drift.outputs],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def get_alerts(request: Request) -> Response:
        body = alerts.status_json()
        body["flags"] = flags.to_json()
        return Response(orjson.dumps(body, default=str), media_type="application/json")

    async def get_flags(request: Request) -> Response:
        return Response(orjson.dumps(flags.to_json()), media_type="application/json")

    async def post_flag(request: Request) -> Response:
        denied = _authorize(request, admin_token)
        if denied is not None:
            return denied
        name = request.path_params["name"]
        if name not in FLAGS:
            return _error(404, f"no flag {name!r}; the flags are {', '.join(FLAGS)}")
        body = await _read_limited(request, 64 << 10)
        if body is None:
            return _error(413, "the body is larger than 64 KiB")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not valid JSON: {exc}")
        value = document.get("value") if isinstance(document, dict) else None
        reason = document.get("reason") if isinstance(document, dict) else None
        if not isinstance(value, bool) or not (reason is None or isinstance(reason, str)):
            return _error(422, 'expected {"value": true|false, "reason"?: "..."}')
        try:
            flags.set(name, value, source="api", reason=reason)
        except ValueError as exc:
            return _error(409, str(exc))
        return Response(orjson.dumps(flags.to_json()), media_type="application/json")

    async def post_labels(request: Request) -> Response:
        denied = _authorize(request, admin_token)
        if denied is not None:
            return denied
        body = await _read_limited(request, labels_max_bytes)
        if body is None:
            return _error(413, f"the body is larger than SIDECAR_LABELS_MAX_BYTES={labels_max_bytes} bytes")
        try:
            items = parse_labels(body)
        except LabelRequestError as exc:
            return _error(exc.status, exc.message, problems=exc.problems)
        try:
            outcomes = await labels.ingest(items)
        except StoreError as exc:
            logger.warning("labels refused: %s", exc)
            return _error(503, "the prediction store could not take the labels; nothing was stored, retry later")
        results: list[dict[str, Any]] = []
        for item, outcome in zip(items, outcomes, strict=True):
            result: dict[str, Any] = {"request_id": item.request_id, "row": item.row, "outcome": outcome.kind}
            if outcome.reason is not None:
                result["reason"] = outcome.reason
            results.append(result)
        counts = dict.fromkeys(("joined", "unmatched", "duplicate", "invalid"), 0)
        for outcome in outcomes:
            counts[outcome.kind] += 1
        return Response(orjson.dumps({**counts, "items": results}), media_type="application/json")

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/api/v1/drift", drift, methods=["GET"]),
            Route("/api/v1/quality", quality, methods=["GET"]),
            Route("/api/v1/performance", get_performance, methods=["GET"]),
            Route("/api/v1/labels", post_labels, methods=["POST"]),
            Route("/api/v1/alerts", get_alerts, methods=["GET"]),
            Route("/api/v1/flags", get_flags, methods=["GET"]),
            Route("/api/v1/flags/{name}", post_flag, methods=["POST"]),
        ]
    )


def _error(status: int, message: str, *, problems: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _authorize(request: Request, token: str | None) -> Response | None:
    """None if the request carries the admin token, else the 401 or 403 to answer."""
    header = request.headers.get("authorization")
    if header is None:
        return Response(
            orjson.dumps({"error": "authentication required: send Authorization: Bearer $SIDECAR_ADMIN_TOKEN"}),
            status_code=401,
            media_type="application/json",
            headers={"www-authenticate": 'Bearer realm="ml-sidecar"'},
        )
    if token is None:
        return _error(403, "this endpoint is disabled: SIDECAR_ADMIN_TOKEN is not set")
    scheme, _, given = header.partition(" ")
    # Constant time: the comparison must not tell an attacker how much of the token matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return _error(403, "the bearer token is not SIDECAR_ADMIN_TOKEN")
    return None


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit``: an oversized body is never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _output_drift(result: DriftResult) -> dict[str, Any]:
    psi = result.method("psi")
    return {
        "output": result.name,
        "verdict": result.verdict,
        "psi": None if psi is None else psi.score,
        "weight": result.weight,
    }
