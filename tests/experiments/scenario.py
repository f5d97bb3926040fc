"""What the runner, API and metrics tests share: an experiment, its users' predictions, and their conversions.

The records are built here (the router's own choice is tested elsewhere), so
each test says exactly how many users each arm has and how often they convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sidecar.experiments.data import Routing, Serving
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.outcomes import OutcomeItem
from sidecar.experiments.runner import serving_of
from sidecar.records import PredictionRecord
from sidecar.serving.metrics import ProxyMetrics
from sidecar.store import PredictionStore
from tests.records import make_record
from tests.store.support import T0

__all__ = [
    "ARMS",
    "MODEL",
    "SPLIT_BY_USER",
    "conversions",
    "definition",
    "exposures",
    "routing",
    "serving",
    "served",
]

ARMS = ("control", "treatment")
MODEL = "ranker"
# A split experiment's definition file, 50/50 by user, for the tests that run real sidecars (the status page
# in Chromium, the Grafana queries in Prometheus); ``%`` the treatment's port.
SPLIT_BY_USER = """\
name: credit-v2
variants:
  control:   {weight: 0.5}
  treatment: {weight: 0.5, upstream: "http://127.0.0.1:%d"}
assignment: {key: "header:x-user-id"}
metrics:
  primary: [{name: conversion, source: outcome, kind: proportion}]
  guardrails: [{name: error_rate, max_increase: 0.01}]
mde: 0.05
"""


def definition(**overrides: Any) -> Experiment:
    """A 50/50 split keyed by user, converted users as the primary metric, an error-rate guardrail."""
    return experiment_from_mapping(
        {
            "name": "ranker-v2",
            "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://challenger"}},
            "assignment": {"key": "header:x-user-id"},
            "metrics": {
                "primary": [{"name": "conversion", "source": "outcome", "kind": "proportion"}],
                "guardrails": [{"name": "error_rate", "max_increase": 0.05}],
            },
            "mde": 0.02,
            "segment_by": "header:x-country",
            **overrides,
        }
    )


def exposures(users: dict[str, int], *, start: float = T0, prefix: str = "") -> list[PredictionRecord]:
    """``users[arm]`` users per arm, each with one or two requests from ``start`` on, in two countries."""
    records = []
    for arm, count in users.items():
        for user in range(count):
            unit = f"{prefix}{arm}-{user}"
            for visit in range(1 + user % 2):
                records.append(
                    make_record(
                        timestamp=start + user + visit * 0.5,
                        request_id=f"{unit}-{visit}",
                        model_name=MODEL,
                        variant=arm,
                        unit=unit,
                        segment=("de", "fr")[user % 2],
                        prediction="a",
                    )
                )
    return records


def conversions(records: list[PredictionRecord], rates: dict[str, float], seed: int) -> list[OutcomeItem]:
    """A conversion, posted by unit, for each user who converts, at ``rates[arm]``."""
    rng = np.random.default_rng(seed)
    units = sorted({(r.variant, r.unit) for r in records if r.unit is not None})
    return [OutcomeItem("conversion", 1.0, None, None, unit) for arm, unit in units if rng.random() < rates[arm]]


async def served(
    store: PredictionStore,
    experiment: Experiment,
    records: list[PredictionRecord],
    rates: dict[str, float],
    seed: int = 7,
) -> None:
    """The records captured, then their conversions posted; every conversion joins its user's arm."""
    store.add(records)
    items = conversions(records, rates, seed)
    outcomes = await store.attach_outcomes(experiment.name, items, arms=ARMS)
    assert {o.kind for o in outcomes} == {"joined"}


def routing(records: Sequence[PredictionRecord]) -> Routing:
    """The router's requests per arm for these records: every one by its unit."""
    return Routing(tuple(sum(r.variant == arm for r in records) for arm in ARMS), (0, 0))


def serving(errors: dict[str, int] | None = None) -> tuple[ProxyMetrics, tuple[Serving, ...]]:
    """The proxy's counters with 1,000 requests per arm, ``errors[arm]`` of them 503s, and their servings."""
    metrics = ProxyMetrics(MODEL, ARMS)
    for arm in ARMS:
        failed = (errors or {}).get(arm, 0)
        for i in range(1_000):
            metrics.record(metrics.routes[arm], 503 if i < failed else 200, 0.004, 0.003, 100, 100)
    return metrics, serving_of(metrics, ARMS)
