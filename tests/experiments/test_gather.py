"""End to end through a real prediction store (SQLite and PostgreSQL): routed predictions, outcomes and labels
in; gather and analyse; the decision the data imply out."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from sidecar.experiments.analysis import analyse
from sidecar.experiments.data import SUMS, Routing, Serving
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.gather import MAX_SEGMENTS, NO_SEGMENT, OTHER_SEGMENT, gather, metric_data
from sidecar.experiments.outcomes import OutcomeItem
from sidecar.experiments.routing import Router
from sidecar.experiments.units import unit_text
from sidecar.performance import PerformanceConfig
from sidecar.records import PredictionRecord
from sidecar.store import LabelItem
from sidecar.store.experiment import SUMS as STORE_SUMS
from sidecar.store.experiment import UnitSums
from tests.postgres import Postgres
from tests.records import make_record
from tests.store.support import T0, Place, opened

pytestmark = pytest.mark.anyio

DAY = 86400.0
CONFIG = PerformanceConfig(task="classification", min_labels=1)
SERVING = (Serving(2_400, 0.010, 40.0), Serving(2_400, 0.011, 42.0))


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "sqlite":
        return Place(tmp_path)
    postgres: Postgres = request.getfixturevalue("postgres")
    return Place(tmp_path, postgres.database())


def ranker() -> Experiment:
    return experiment_from_mapping(
        {
            "name": "ranker-v2",
            "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://challenger"}},
            "assignment": {"key": "header:x-user-id"},
            "metrics": {
                "primary": [{"name": "conversion", "source": "outcome", "kind": "proportion"}],
                "secondary": [
                    {"name": "accuracy", "source": "label"},
                    {"name": "revenue", "source": "outcome", "kind": "mean", "mde": 2.0},
                ],
                "guardrails": [{"name": "latency_p95_ms", "max_increase": 20}],
            },
            "mde": 0.03,
            "segment_by": "header:x-country",
        }
    )


def traffic(experiment: Experiment, seed: int) -> tuple[list[PredictionRecord], Router]:
    """1,200 users over three days, routed by the real router; a few requests carry no user id."""
    rng = np.random.default_rng(seed)
    router = Router(experiment, rng=random.Random(seed))
    records = []
    for i in range(2_400):
        user = int(rng.integers(1_200))
        day = int(rng.integers(3))
        headers = [(b"x-user-id", f"u-{user}".encode())] if rng.random() > 0.02 else []
        route = router.route(headers)
        unit = None if route.unit is None else unit_text(route.unit)
        better = route.variant == "treatment"
        correct = rng.random() < (0.9 if better else 0.7)
        records.append(
            make_record(
                timestamp=T0 + day * DAY + i,
                request_id=f"req-{i}",
                model_name="ranker",
                variant=route.variant,
                prediction="a" if correct else "b",
                unit=unit,
                segment=["de", "fr"][user % 2],
            )
        )
    return records, router


async def test_a_clear_winner_rolls_out_from_what_the_store_holds(place: Place) -> None:
    experiment = ranker()
    records, router = traffic(experiment, seed=4)
    rng = np.random.default_rng(9)
    async with opened(place, buffer_rows=5_000, batch_rows=5_000) as store:
        store.add(records)
        # Conversions are posted by user (treatment converts far more); revenue by request; labels last.
        arms = {r.unit: r.variant for r in records if r.unit is not None}
        conversions = [
            OutcomeItem("conversion", 1.0, None, None, unit)
            for unit, variant in arms.items()
            if rng.random() < (0.30 if variant == "treatment" else 0.12)
        ]
        revenue = [OutcomeItem("revenue", float(rng.exponential(10.0)), r.request_id, None, None) for r in records[::3]]
        outcomes = await store.attach_outcomes(experiment.name, conversions + revenue, arms=("control", "treatment"))
        assert {o.kind for o in outcomes} == {"joined"}
        labels = await store.attach_labels([LabelItem(r.request_id, None, "a") for r in records[::2]])
        assert {o.kind for o in labels} == {"joined"}
        data = await gather(
            store,
            experiment,
            since=T0,
            routing=Routing(tuple(router.keyed), tuple(router.randomised)),
            serving=SERVING,
            config=CONFIG,
        )
    # The captured units are the distinct users per arm, plus the requests routed without one.
    for i, arm in enumerate(("control", "treatment")):
        users = {r.unit for r in records if r.variant == arm and r.unit is not None}
        alone = [r for r in records if r.variant == arm and r.unit is None]
        assert data.captured[i] == len(users) + len(alone)
    assert data.metrics["conversion"].per_unit and not data.metrics["revenue"].per_unit
    assert data.metrics["accuracy"].total[:, 0].sum() == len(
        {(r.variant, r.unit or r.request_id) for r in records[::2]}
    )

    snapshot = analyse(experiment, data, now=T0 + 3 * DAY)
    assert snapshot.decision.decision.decision == "roll_out", snapshot.decision
    assert snapshot.decision.variants == ("treatment",)
    conversion = snapshot.metric("conversion")
    assert conversion.method == "proportion" and conversion.effects[0].effect.difference > 0.1
    accuracy = snapshot.metric("accuracy")
    # Users sent up to a few labelled requests each: accuracy is a per-request ratio over users.
    assert accuracy.method == "ratio" and accuracy.effects[0].effect.pvalue_adjusted < 0.05
    assert accuracy.arms[1].mean == pytest.approx(0.9, abs=0.05)
    assert snapshot.metric("revenue").method == "ratio"
    simpson = conversion.effects[0].simpson
    assert simpson is not None and {s.name for s in simpson.segments} == {"de", "fr"} and not simpson.flagged
    novelty = accuracy.effects[0].novelty
    assert novelty is not None and not novelty.flagged  # three days of a steady effect
    assert not any(r.ratio.mismatch for r in snapshot.ratios)

    # The same data with a slower treatment: the guardrail reverts the winner.
    slow = (Serving(2_400, 0.010, 40.0), Serving(2_400, 0.010, 90.0))
    reverted = analyse(experiment, dataclasses.replace(data, serving=slow), now=T0)
    assert reverted.decision.decision.decision == "revert"


async def test_an_a_a_experiment_through_the_store_finds_nothing(place: Place) -> None:
    experiment = ranker()
    records, router = traffic(experiment, seed=6)
    rng = np.random.default_rng(1)
    for r in records:
        r.prediction = "a" if rng.random() < 0.8 else "b"  # the same model behind both arms
    async with opened(place, buffer_rows=5_000, batch_rows=5_000) as store:
        store.add(records)
        units = sorted({r.unit for r in records if r.unit is not None})
        conversions = [OutcomeItem("conversion", 1.0, None, None, u) for u in units if rng.random() < 0.15]
        await store.attach_outcomes(experiment.name, conversions, arms=("control", "treatment"))
        await store.attach_labels([LabelItem(r.request_id, None, "a") for r in records])
        data = await gather(
            store,
            experiment,
            since=T0,
            routing=Routing(tuple(router.keyed), tuple(router.randomised)),
            serving=SERVING,
            config=CONFIG,
        )
    snapshot = analyse(experiment, data, now=T0 + 3 * DAY)
    assert snapshot.decision.decision.decision == "keep_running"
    assert all(e.effect.pvalue_adjusted > 0.05 for m in snapshot.metrics for e in m.effects)


async def test_an_empty_store_gathers_empty_data(place: Place) -> None:
    experiment = ranker()
    async with opened(place) as store:
        store.add([make_record(timestamp=T0, request_id="other", model_name="other", variant="control", unit="u-1")])
        data = await gather(
            store, experiment, since=T0, routing=Routing((0, 0), (0, 0)), serving=SERVING, config=CONFIG, model="ranker"
        )
    assert data.captured == (0, 0) and set(data.metrics) == {"conversion", "accuracy", "revenue"}
    snapshot = analyse(experiment, data, now=T0)
    assert snapshot.decision.decision.decision == "keep_running"


def test_segments_are_named_and_bounded() -> None:
    arms = 2
    segments: dict[str | None, np.ndarray] = {
        f"s{i:02d}": np.full((arms, len(SUMS)), float(i + 1)) for i in range(MAX_SEGMENTS + 5)
    }
    segments[None] = np.full((arms, len(SUMS)), 100.0)
    sums = UnitSums(segments, np.zeros((0, arms, len(SUMS))), arms)
    data = metric_data(sums, per_unit=True)
    assert len(data.segments) == MAX_SEGMENTS + 1
    assert list(data.segments)[0] == NO_SEGMENT  # the most units first
    # The fewest-units segments are summed into one, so no unit is lost.
    assert data.segments[OTHER_SEGMENT][0, 0] == sum(range(1, 7))
    np.testing.assert_array_equal(sum(data.segments.values()), data.total)


def test_the_analysis_reads_the_stores_columns() -> None:
    assert SUMS == STORE_SUMS
