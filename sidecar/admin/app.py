"""The admin app on its own port: metrics, health, readiness, the JSON API and the labels endpoint.

Kept apart from the proxy port so that the sidecar never shadows a path of
the model server, as Envoy keeps its admin listener apart. Handlers read
the published snapshots and render them; they compute no statistics at
request time. The one write path, ``POST /api/v1/labels``, hands the parsed
items to the :class:`~sidecar.labels.ingest.LabelIngest`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sidecar.admin.health import Readiness
from sidecar.admin.history import History
from sidecar.admin.page import refresh_interval, status_route
from sidecar.admin.requests import authorize, error, read_limited
from sidecar.admin.serving import serving_routes
from sidecar.alerting import AlertEngine
from sidecar.drift import DriftResult
from sidecar.experiments.definition import Experiment
from sidecar.experiments.runner import ExperimentRunner
from sidecar.experiments.shadow import Outcome as MirrorOutcome
from sidecar.experiments.shadow_runner import ShadowRunner
from sidecar.labels.api import LabelRequestError, parse_labels
from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.labels.ingest import LabelIngest
from sidecar.labels.views import performance_json
from sidecar.monitoring.evaluator import DataMonitors, status_json
from sidecar.serving.flags import Flags
from sidecar.store import StoreError

__all__ = ["create_admin_app"]

logger = logging.getLogger("sidecar.admin.app")

# What a 503 from the labels endpoint asks the client to wait: a few seconds, since the store
# retries the database itself and a label batch is idempotent.
_STORE_RETRY_SECONDS = 5


def create_admin_app(
    registry: CollectorRegistry,
    readiness: Readiness | None,
    monitors: DataMonitors,
    labels: LabelIngest,
    performance: PerformanceEvaluator,
    alerts: AlertEngine,
    flags: Flags,
    *,
    admin_token: str | None,
    labels_max_bytes: int,
    history: History | None = None,
    eval_interval_seconds: float = 15.0,
    routes: Sequence[BaseRoute] = (),
    experiment: Experiment | None = None,
    experiments: ExperimentRunner | ShadowRunner | None = None,
    shadow_outcomes: Callable[[], Mapping[MirrorOutcome, int] | None] | None = None,
) -> Starlette:
    """Build the admin ASGI app over an explicit registry, the readiness check and the monitors.

    ``monitors`` and ``performance`` are read for their latest snapshots only;
    ``labels`` takes the posted labels. The status page (``GET /``) also reads
    ``history`` (past evaluations and the request counters; its owner runs
    :meth:`History.run`) and refreshes every ``eval_interval_seconds``.

    ``admin_token`` guards the endpoints that change state (``POST``); unset, they refuse every request.
    ``routes`` are served too: the experiment's (:func:`sidecar.experiments.api.experiment_routes`).
    ``experiment``, its runner ``experiments`` (a split experiment's :class:`ExperimentRunner`, a shadow one's
    :class:`ShadowRunner`) and ``shadow_outcomes`` give the status page its experiment
    section (:func:`sidecar.admin.page.status_route`).
    """

    async def metrics(request: Request) -> Response:
        # Prometheus text by default, OpenMetrics when the scraper asks for it.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

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

    async def post_labels(request: Request) -> Response:
        denied = authorize(request, admin_token)
        if denied is not None:
            return denied
        body = await read_limited(request, labels_max_bytes)
        if body is None:
            return error(413, f"the body is larger than SIDECAR_LABELS_MAX_BYTES={labels_max_bytes} bytes")
        try:
            items = parse_labels(body)
        except LabelRequestError as exc:
            return error(exc.status, exc.message, problems=exc.problems)
        try:
            outcomes = await labels.ingest(items)
        except StoreError as exc:
            logger.warning("labels refused: %s", exc)
            # Nothing of the batch was stored, so the same POST may simply be sent again; the store
            # reconnects on its own within its backoff (at most 30 s).
            return error(
                503,
                "the prediction store could not take the labels; nothing was stored, retry later",
                retry_after=_STORE_RETRY_SECONDS,
            )
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
            status_route(
                flags,
                monitors,
                performance,
                alerts,
                history,
                refresh_seconds=refresh_interval(eval_interval_seconds),
                experiment=experiment,
                experiments=experiments,
                shadow_outcomes=shadow_outcomes,
            ),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/api/v1/drift", drift, methods=["GET"]),
            Route("/api/v1/quality", quality, methods=["GET"]),
            Route("/api/v1/performance", get_performance, methods=["GET"]),
            Route("/api/v1/labels", post_labels, methods=["POST"]),
            Route("/api/v1/alerts", get_alerts, methods=["GET"]),
            *routes,
            # In process mode the serving process answers these itself (sidecar.plane.front).
            *(
                []
                if readiness is None
                else serving_routes(
                    readiness,
                    flags,
                    monitoring=lambda: {
                        "reference": status_json(monitors.snapshot.reference),
                        "store": labels.store.status(),
                    },
                    admin_token=admin_token,
                )
            ),
        ]
    )


def _output_drift(result: DriftResult) -> dict[str, Any]:
    psi = result.method("psi")
    return {
        "output": result.name,
        "verdict": result.verdict,
        "psi": None if psi is None else psi.score,
        "weight": result.weight,
    }
