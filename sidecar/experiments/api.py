"""``GET /api/v1/experiments`` and ``POST /api/v1/outcomes``: the experiment's routes on the admin port.

:func:`experiment_routes` returns them for the admin app to mount. They read
the runner's latest snapshot and hand posted outcomes to the store; they
compute no statistics.

**GET /api/v1/experiments**: ``{"experiments": [...]}``, empty without an
experiment (``SIDECAR_EXPERIMENT_PATH`` unset), else one entry::

    {"name": "ranker-v2", "status": "evaluated", "started_at": "...", "evaluated_at": "...",
     "failures": {"store": 0, "error": 0},
     "definition": {"name", "mode", "variants": [{"name", "weight", "control", "upstream"}], "assignment_key",
                    "metrics": {"primary": [{"name", "source", "kind", "goal", "mde"}], "secondary": [...],
                                "guardrails": [{"name", "max_increase"}]},
                    "alpha", "correction", "power", "mde", "sequential", "segment_by"},
     "analysis": {...}, "shadow": null}

``status`` is ``evaluated`` once analysed, ``pending`` before (``analysis``,
``shadow`` and ``evaluated_at`` null, ``started_at`` null until the store has
been read), or ``not_analysed`` for a shadow experiment given no comparison
(no :class:`~.shadow_runner.ShadowRunner`). A split experiment's analysis is
``analysis`` (:func:`~.view.snapshot_json`'s body; ``shadow`` is null); a
shadow experiment's comparison of its two models on the same requests is
``shadow`` (:func:`~.shadow_view.shadow_json`'s body; ``analysis`` is null).
A variant's ``upstream`` is shown with its password masked; the control's is
null (the primary upstream); the assignment's salt is not shown.

**POST /api/v1/outcomes** (``Authorization: Bearer $SIDECAR_ADMIN_TOKEN``):
business outcomes (:mod:`.outcomes` gives the body). The answers, in the
order they are checked:

=====  =====================================================================
401    no ``Authorization`` header; 403: a wrong token, or none configured
409    no experiment is configured, so no outcome can join an arm
413    a body over ``max_bytes`` (``SIDECAR_LABELS_MAX_BYTES``), or over 10,000 items
400    the body is not JSON
422    anything else wrong with the body: rejected whole, one line per problem
503    the store failed or cannot be reached: nothing stored, ``Retry-After``
200    ``{"joined", "unmatched", "duplicate", "invalid", "items": [...]}``, one
       item per outcome in order: its key (``unit``, or ``request_id`` and
       ``row``), ``metric``, ``outcome``, the arm it joined (``variant``) or
       why not (``reason``)
=====  =====================================================================

Posting the same outcomes again is harmless: the first of a key is kept and
the repeat is a ``duplicate``, so a client retries a 503 by sending the same
body.

Usage::

    routes = experiment_routes(runner, store, experiment, admin_token=token, max_bytes=32 << 20)
    app = Starlette(routes=[*other_routes, *routes])
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.admin.requests import authorize, error, read_limited
from sidecar.experiments.definition import Experiment, Metric
from sidecar.experiments.outcomes import OutcomeItem, OutcomeRequestError, parse_outcomes
from sidecar.experiments.periodic import FAILURES
from sidecar.experiments.runner import ExperimentRunner
from sidecar.experiments.shadow_runner import ShadowRunner
from sidecar.records import rfc3339
from sidecar.store import OUTCOMES, Outcome, PredictionStore, StoreError
from sidecar.syntax.store import mask_url

__all__ = ["experiment_routes", "experiments_json"]

logger = logging.getLogger("sidecar.experiments.api")

# What a 503 asks the client to wait, as the labels endpoint does: the store retries the database itself,
# and an outcome batch is idempotent.
_STORE_RETRY_SECONDS: Final = 5


def experiment_routes(
    runner: ExperimentRunner | ShadowRunner | None,
    store: PredictionStore,
    experiment: Experiment | None,
    *,
    admin_token: str | None,
    max_bytes: int,
) -> list[Route]:
    """The two routes; ``runner`` the experiment's (an :class:`ExperimentRunner` for a split one, a
    :class:`ShadowRunner` for a shadow one), None before one is built, ``experiment`` None without an
    experiment. See the module docstring."""

    async def get_experiments(request: Request) -> Response:
        return Response(orjson.dumps(experiments_json(runner, experiment)), media_type="application/json")

    async def post_outcomes(request: Request) -> Response:
        denied = authorize(request, admin_token)
        if denied is not None:
            return denied
        if experiment is None:
            return error(409, "no experiment is running (SIDECAR_EXPERIMENT_PATH is not set): outcomes join nothing")
        body = await read_limited(request, max_bytes)
        if body is None:
            return error(413, f"the body is larger than SIDECAR_LABELS_MAX_BYTES={max_bytes} bytes")
        try:
            items = parse_outcomes(body, experiment)
        except OutcomeRequestError as exc:
            return error(exc.status, exc.message, problems=exc.problems)
        arms = [v.name for v in experiment.variants]
        try:
            outcomes = await store.attach_outcomes(experiment.name, items, arms=arms)
        except StoreError as exc:
            logger.warning("outcomes refused: %s", exc)
            # Nothing of the batch was stored, so the same POST may simply be sent again.
            return error(
                503,
                "the prediction store could not take the outcomes; nothing was stored, retry later",
                retry_after=_STORE_RETRY_SECONDS,
            )
        counts = dict.fromkeys(OUTCOMES, 0)
        for outcome in outcomes:
            counts[outcome.kind] += 1
        results = [_result(item, outcome) for item, outcome in zip(items, outcomes, strict=True)]
        return Response(orjson.dumps({**counts, "items": results}), media_type="application/json")

    return [
        Route("/api/v1/experiments", get_experiments, methods=["GET"]),
        Route("/api/v1/outcomes", post_outcomes, methods=["POST"]),
    ]


def experiments_json(runner: ExperimentRunner | ShadowRunner | None, experiment: Experiment | None) -> dict[str, Any]:
    """The body of ``GET /api/v1/experiments``; see the module docstring."""
    if experiment is None:
        return {"experiments": []}
    started_at = None if runner is None else runner.started_at
    analysis: dict[str, Any] | None = None
    shadow: dict[str, Any] | None = None
    computed_at: float | None = None
    # The views are imported where used, not at the top: they load the statistics (scipy), which the serving
    # process, building these routes too, must not.
    if isinstance(runner, ShadowRunner):
        if (compared := runner.snapshot) is not None:
            from sidecar.experiments.shadow_view import shadow_json

            shadow, computed_at = shadow_json(compared), compared.computed_at
    elif runner is not None and (analysed := runner.snapshot) is not None:
        from sidecar.experiments.view import snapshot_json

        analysis, computed_at = snapshot_json(analysed), analysed.computed_at
    if runner is None and experiment.mode == "shadow":
        status = "not_analysed"
    else:
        status = "pending" if computed_at is None else "evaluated"
    entry = {
        "name": experiment.name,
        "status": status,
        "started_at": None if started_at is None else rfc3339(started_at),
        "evaluated_at": None if computed_at is None else rfc3339(computed_at),
        "failures": dict.fromkeys(FAILURES, 0) if runner is None else dict(runner.failures),
        "definition": _definition(experiment),
        "analysis": analysis,
        "shadow": shadow,
    }
    return {"experiments": [entry]}


def _definition(experiment: Experiment) -> dict[str, Any]:
    key, segment_by = experiment.assignment.key, experiment.segment_by
    metrics = experiment.metrics
    return {
        "name": experiment.name,
        "mode": experiment.mode,
        "variants": [
            {
                "name": v.name,
                "weight": v.weight,
                "control": v.is_control,
                "upstream": None if v.upstream is None else mask_url(v.upstream),
            }
            for v in experiment.variants
        ],
        "assignment_key": None if key is None else f"{key[0]}:{key[1]}",
        "metrics": {
            "primary": [_metric(m) for m in metrics.primary],
            "secondary": [_metric(m) for m in metrics.secondary],
            "guardrails": [{"name": g.name, "max_increase": g.max_increase} for g in metrics.guardrails],
        },
        "alpha": experiment.alpha,
        "correction": experiment.correction,
        "power": experiment.power,
        "mde": experiment.mde,
        "sequential": experiment.sequential,
        "segment_by": None if segment_by is None else f"{segment_by[0]}:{segment_by[1]}",
    }


def _metric(metric: Metric) -> dict[str, Any]:
    return {"name": metric.name, "source": metric.source, "kind": metric.kind, "goal": metric.goal, "mde": metric.mde}


def _result(item: OutcomeItem, outcome: Outcome) -> dict[str, Any]:
    key = {"unit": item.unit} if item.unit is not None else {"request_id": item.request_id, "row": item.row}
    result: dict[str, Any] = {**key, "metric": item.metric, "outcome": outcome.kind}
    if outcome.variant is not None:
        result["variant"] = outcome.variant
    if outcome.reason is not None:
        result["reason"] = outcome.reason
    return result
