"""The API body of an experiment snapshot: fixed keys, JSON only, read back whole; and the metrics' label values."""

from __future__ import annotations

import math

import numpy as np
import orjson

from sidecar.experiments.analysis import analyse
from sidecar.experiments.data import ExperimentData, MetricData, Routing, Serving
from sidecar.experiments.decision import DECISIONS
from sidecar.experiments.definition import Experiment
from sidecar.experiments.snapshot import ExperimentSnapshot
from sidecar.experiments.view import (
    EFFECT_STATS,
    decision_samples,
    effect_samples,
    label_sets,
    snapshot_from_json,
    snapshot_json,
    srm_samples,
)
from tests.experiments.test_analysis import T0, converted, definition, of_values

THREE = {
    "control": {"weight": 0.4},
    "blue": {"weight": 0.3, "upstream": "http://blue"},
    "green": {"weight": 0.3, "upstream": "http://green"},
}


def rich_snapshot() -> tuple[Experiment, ExperimentSnapshot]:
    """Three arms, segments, periods, a sequential test and an empty metric: every part of the body filled."""
    experiment = definition(variants=THREE, segment_by="header:x-country", sequential=True)
    rng = np.random.default_rng(2)
    segments = {
        name: np.array([converted(2_000, 200 + 10 * i), converted(1_500, 170 + i), converted(1_500, 190)], dtype=float)
        for i, name in enumerate(["de", "fr", "__none__"])
    }
    periods = np.array(
        [[converted(1_000, 100), converted(750, 90 - k), converted(750, 95)] for k in range(4)], dtype=float
    )
    revenue = [of_values(np.round(rng.exponential(20.0, n), 2)) for n in (6_000, 4_500, 4_500)]
    data = ExperimentData(
        since=T0,
        routing=Routing((60_000, 45_000, 45_000), (100, 80, 70)),
        captured=(6_000, 4_500, 4_500),
        serving=(Serving(60_100, 0.01, 40.0), Serving(45_080, 0.02, 44.5), Serving(45_070, math.nan, math.nan)),
        metrics={
            "conversion": MetricData(np.sum(list(segments.values()), axis=0), segments, periods, per_unit=False),
            "revenue": MetricData.of_totals(revenue, per_unit=True),
        },
    )
    return experiment, analyse(experiment, data, now=T0 + 3600.123)


def test_the_body_has_fixed_keys_and_is_plain_json() -> None:
    _, snapshot = rich_snapshot()
    body = snapshot_json(snapshot)
    assert list(body) == [
        "experiment", "computed_at", "since", "assignment_key", "alpha", "correction", "power", "sequential",
        "decision", "arms", "srm", "metrics", "guardrails", "decisions",
    ]  # fmt: skip
    assert body["computed_at"] == "2025-11-26T09:10:38.123Z" and body["since"] == "2025-11-26T08:10:38.000Z"
    assert list(body["srm"]) == ["assignment", "capture"]
    assert list(body["decision"]) == ["decision", "reason", "remaining", "variants"]
    assert list(body["arms"][0]) == [
        "name", "weight", "control", "routed", "captured_units", "requests", "error_rate", "latency_p95_ms",
    ]  # fmt: skip
    metric = body["metrics"][0]
    assert list(metric) == ["name", "role", "source", "kind", "goal", "mde", "per_unit", "method", "arms", "effects"]
    assert [arm["variant"] for arm in metric["arms"]] == ["control", "blue", "green"]
    effect = metric["effects"][0]
    assert list(effect) == [
        "variant", "difference", "ci_low", "ci_high", "lift", "lift_standard_error", "lift_ci_low", "lift_ci_high",
        "pvalue", "pvalue_adjusted", "sequential", "mde_now", "required", "remaining", "novelty", "simpson",
    ]  # fmt: skip
    assert effect["novelty"] is not None and effect["simpson"]["segments"][0]["name"] == "de"
    assert body["metrics"][1]["effects"][0]["novelty"] is None  # revenue is per unit: no periods
    # Plain JSON: what could not be computed is null, never NaN, and it survives a trip through the wire.
    assert body["arms"][2]["latency_p95_ms"] is None
    assert orjson.loads(orjson.dumps(body)) == body
    assert "NaN" not in orjson.dumps(body).decode()


def test_the_body_reads_back_into_the_snapshot_it_shows() -> None:
    experiment, snapshot = rich_snapshot()
    body = snapshot_json(snapshot)
    again = snapshot_from_json(orjson.loads(orjson.dumps(body)))
    assert snapshot_json(again) == body
    # Whole values, not only their rendering: the effects, tests and decisions are the snapshot's.
    assert again.decision == snapshot.decision and again.decisions == snapshot.decisions
    assert again.ratios == snapshot.ratios and again.guardrails[:2] == snapshot.guardrails[:2]
    mine, theirs = again.metric("conversion").effects[0], snapshot.metric("conversion").effects[0]
    assert mine.effect == theirs.effect and mine.power == theirs.power
    assert mine.novelty == theirs.novelty and mine.simpson == theirs.simpson
    # A sequential analysis may start from the body read back: the running results carry over.
    assert analyse(experiment, _same_data(experiment), now=T0, previous=again).sequential


def _same_data(experiment: Experiment) -> ExperimentData:
    arms = len(experiment.variants)
    return ExperimentData(T0, Routing((0,) * arms, (0,) * arms), (0,) * arms, (Serving(0, math.nan, math.nan),) * arms)


def test_the_metrics_label_values_come_from_the_definition() -> None:
    experiment, snapshot = rich_snapshot()
    sets = label_sets(experiment)
    effects = effect_samples(snapshot)
    assert [labels for labels, _ in effects] == sets["effect"]
    assert len(sets["effect"]) == 2 * 2 * len(EFFECT_STATS)  # blue and green, conversion and revenue
    conversion_blue = dict((labels[2], value) for labels, value in effects if labels[:2] == ("blue", "conversion"))
    effect = snapshot.metric("conversion").effect("blue").effect
    assert conversion_blue["lift"] == effect.lift.value and conversion_blue["ci_low"] == effect.lift.ci_low
    assert conversion_blue["difference_ci_high"] == effect.ci_high
    assert conversion_blue["pvalue_adjusted"] == effect.pvalue_adjusted
    assert [(stage,) for stage, _ in srm_samples(snapshot)] == sets["srm"] == [("assignment",), ("capture",)]
    decisions = decision_samples(snapshot)
    assert [(d,) for d, _ in decisions] == sets["decision"] == [(d,) for d in DECISIONS]
    assert [d for d, value in decisions if value == 1.0] == [snapshot.decision.decision.decision]
    assert sum(value for _, value in decisions) == 1.0
