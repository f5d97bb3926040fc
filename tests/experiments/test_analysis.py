"""The analysis, on synthetic data whose answer is known, and against the statistics modules and scipy."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.analysis import analyse
from sidecar.experiments.compare import adjusted, compare_means, compare_proportions
from sidecar.experiments.correction import adjust
from sidecar.experiments.data import SUMS, ExperimentData, MetricData, Routing, Serving
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.moments import Moments, Proportion
from sidecar.experiments.power import power_for_means, power_for_proportions
from sidecar.experiments.snapshot import ExperimentSnapshot
from sidecar.experiments.srm import srm

T0 = 1_764_144_638.0
SERVING = (Serving(10_000, 0.010, 40.0), Serving(10_000, 0.012, 44.0))


def definition(**changes: Any) -> Experiment:
    spec: dict[str, Any] = {
        "name": "ranker-v2",
        "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://challenger:8080"}},
        "assignment": {"key": "header:x-user-id"},
        "metrics": {
            "primary": [{"name": "conversion", "source": "outcome", "kind": "proportion"}],
            "secondary": [{"name": "revenue", "source": "outcome", "kind": "mean", "mde": 1.0}],
            "guardrails": [
                {"name": "error_rate", "max_increase": 0.01},
                {"name": "latency_p95_ms", "max_increase": 20},
            ],
        },
        "mde": 0.02,
    }
    spec.update(changes)
    return experiment_from_mapping(spec)


def converted(n: int, x: int) -> list[float]:
    """The sums of n units, x of which converted, each seen once."""
    return [n, x, n, x, n, x]


def of_values(values: np.ndarray, exposures: np.ndarray | None = None) -> list[float]:
    """The sums of units with these values (and exposures, one each by default)."""
    x = np.ones_like(values) if exposures is None else exposures
    return [values.size, values.sum(), x.sum(), values @ values, x @ x, x @ values]


def data(
    metrics: dict[str, MetricData],
    *,
    captured: tuple[int, ...] = (5_000, 5_000),
    routing: Routing | None = None,
    serving: tuple[Serving, ...] = SERVING,
) -> ExperimentData:
    arms = len(captured)
    routing = routing or Routing((10_000,) * arms, (40,) * arms)
    return ExperimentData(since=T0, routing=routing, captured=captured, serving=serving, metrics=metrics)


def conversion(control: tuple[int, int], treatment: tuple[int, int]) -> dict[str, MetricData]:
    return {"conversion": MetricData.of_totals([converted(*control), converted(*treatment)], per_unit=True)}


def decision(snapshot: ExperimentSnapshot) -> str:
    return snapshot.decision.decision.decision


def test_an_a_a_experiment_keeps_running_until_its_interval_rules_out_the_mde() -> None:
    early = analyse(definition(), data(conversion((1_000, 100), (1_000, 100))), now=T0)
    assert decision(early) == "keep_running"
    effect = early.metric("conversion").effects[0]
    assert early.decision.decision.remaining == effect.power.remaining is not None
    assert effect.power.remaining[0] > 0
    late = analyse(definition(), data(conversion((20_000, 2_000), (20_000, 2_010))), now=T0)
    assert decision(late) == "no_difference"
    ci = late.metric("conversion").effects[0].effect
    assert -0.02 < ci.ci_low < 0 < ci.ci_high < 0.02


def test_a_clear_win_rolls_out() -> None:
    snapshot = analyse(definition(), data(conversion((5_000, 500), (5_000, 650))), now=T0)
    assert decision(snapshot) == "roll_out"
    assert snapshot.decision.variants == ("treatment",)
    assert snapshot.decisions[0].decision == snapshot.decision.decision


def test_a_breached_guardrail_reverts_even_a_winner() -> None:
    slow = (Serving(10_000, 0.010, 40.0), Serving(10_000, 0.010, 75.0))
    snapshot = analyse(definition(), data(conversion((5_000, 500), (5_000, 650)), serving=slow), now=T0)
    assert decision(snapshot) == "revert"
    assert snapshot.decision.decision.reason == "latency_p95_ms rose by 35, more than the 20 allowed"
    assert [(g.check.name, g.check.breached) for g in snapshot.guardrails] == [
        ("error_rate", False),
        ("latency_p95_ms", True),
    ]


def test_a_significantly_worse_primary_reverts() -> None:
    snapshot = analyse(definition(), data(conversion((5_000, 650), (5_000, 500))), now=T0)
    assert decision(snapshot) == "revert"
    assert snapshot.decision.variants == ("treatment",)


def test_a_sample_ratio_mismatch_on_capture_is_invalid() -> None:
    snapshot = analyse(definition(), data(conversion((5_100, 510), (4_900, 650)), captured=(5_100, 4_600)), now=T0)
    assert decision(snapshot) == "invalid"
    capture = snapshot.ratio("capture")
    assert capture.observed == (5_100, 4_600) and capture.ratio == srm([5_100, 4_600], [0.5, 0.5])
    assert capture.ratio.mismatch and not snapshot.ratio("assignment").ratio.mismatch


def test_the_assignment_stage_counts_units_not_a_keyed_units_requests() -> None:
    # Keyed: the keyed requests are not units (a heavy user sends many), so only the coins are counted.
    heavy = Routing(keyed=(60_000, 40_000), randomised=(50, 52))
    keyed = analyse(definition(), data(conversion((5_000, 500), (5_000, 500)), routing=heavy), now=T0)
    assert keyed.ratio("assignment").observed == (50, 52) and not keyed.ratio("assignment").ratio.mismatch
    # Without a key every request is a unit: the same counts are a mismatch.
    unkeyed = definition(assignment={})
    snapshot = analyse(unkeyed, data(conversion((5_000, 500), (5_000, 500)), routing=heavy), now=T0)
    assert snapshot.ratio("assignment").observed == (60_050, 40_052)
    assert snapshot.ratio("assignment").ratio.mismatch and decision(snapshot) == "invalid"
    assert snapshot.key is None and keyed.key == "header:x-user-id"


def test_the_numbers_are_the_statistics_modules_own() -> None:
    rng = np.random.default_rng(5)
    revenue_c = np.round(rng.exponential(20.0, 3_000), 2)
    revenue_t = np.round(rng.exponential(21.5, 3_200), 2)
    metrics = conversion((3_000, 330), (3_200, 400))
    metrics["revenue"] = MetricData.of_totals([of_values(revenue_c), of_values(revenue_t)], per_unit=True)
    experiment = definition(variants={"control": {"weight": 0.6}, "treatment": {"weight": 0.4, "upstream": "http://t"}})
    snapshot = analyse(experiment, data(metrics, captured=(3_000, 3_200)), now=T0)

    c, t = Proportion(3_000, 330), Proportion(3_200, 400)
    raw = [compare_proportions(c, t, alpha=0.05)]
    revenue = snapshot.metric("revenue")
    assert revenue.method == "mean" and snapshot.metric("conversion").method == "proportion"
    raw.append(compare_means(Moments.of_values(revenue_c), Moments.of_values(revenue_t), alpha=0.05))
    expected = adjusted(raw, "holm")
    got = [snapshot.metric("conversion").effects[0].effect, revenue.effects[0].effect]
    for mine, theirs in zip(got, expected, strict=True):
        for field in ("difference", "ci_low", "ci_high", "pvalue", "pvalue_adjusted"):
            assert getattr(mine, field) == pytest.approx(getattr(theirs, field), rel=1e-9, abs=1e-12), field
    assert [e.pvalue_adjusted for e in got] == pytest.approx(list(adjust([e.pvalue for e in raw], "holm")))
    # Welch against scipy, on the raw per-unit values the sums came from.
    oracle = stats.ttest_ind(revenue_t, revenue_c, equal_var=False)
    interval = oracle.confidence_interval(0.95)
    assert got[1].pvalue == pytest.approx(oracle.pvalue, rel=1e-9)
    assert (got[1].ci_low, got[1].ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)
    # Power at α / 2 (two comparisons under Holm), the arms planned in the weights' ratio 0.4 / 0.6.
    power = snapshot.metric("conversion").effects[0].power
    assert power == power_for_proportions(c, t, mde=0.02, alpha=0.025, power=0.8, ratio=0.4 / 0.6)
    revenue_power = power_for_means(
        Moments.of_values(revenue_c), Moments.of_values(revenue_t), mde=1.0, alpha=0.025, power=0.8, ratio=2 / 3
    )
    assert revenue.effects[0].power.required == revenue_power.required
    assert [m.n for m in revenue.arms] == [3_000, 3_200]
    assert revenue.arms[0].mean == pytest.approx(revenue_c.mean(), rel=1e-12)
    assert revenue.arms[0].variance == pytest.approx(revenue_c.var(ddof=1), rel=1e-9)


def test_a_per_exposure_metric_is_a_delta_method_ratio_over_units() -> None:
    rng = np.random.default_rng(8)
    requests_c = rng.integers(1, 6, 2_000).astype(float)
    requests_t = rng.integers(1, 6, 2_000).astype(float)
    clicks_c = rng.binomial(requests_c.astype(int), 0.10).astype(float)
    clicks_t = rng.binomial(requests_t.astype(int), 0.12).astype(float)
    metrics = {"conversion": MetricData.of_totals([of_values(clicks_c, requests_c), of_values(clicks_t, requests_t)])}
    snapshot = analyse(definition(), data(metrics, captured=(2_000, 2_000)), now=T0)
    report = snapshot.metric("conversion")
    assert (report.method, report.per_unit, report.exposures) == ("ratio", False, (requests_c.sum(), requests_t.sum()))
    control, treatment = Moments.of_ratio(clicks_c, requests_c), Moments.of_ratio(clicks_t, requests_t)
    expected = compare_means(control, treatment, alpha=0.05)
    effect = report.effects[0].effect
    assert effect.difference == pytest.approx(expected.difference, rel=1e-12)
    assert (effect.ci_low, effect.ci_high, effect.pvalue) == pytest.approx(
        (expected.ci_low, expected.ci_high, expected.pvalue), rel=1e-9
    )
    assert report.arms[0].mean == pytest.approx(control.mean, rel=1e-12)
    assert report.arms[0].variance == pytest.approx(control.variance, rel=1e-9)


def sequential() -> Experiment:
    return definition(sequential=True)


def test_sequential_keeps_the_running_minimum_and_the_intersection() -> None:
    first = analyse(sequential(), data(conversion((5_000, 500), (5_000, 620))), now=T0)
    strong = first.metric("conversion").effects[0].effect
    assert strong.sequential and strong.pvalue < 0.05 and strong.ci_low > 0
    # The next look's data say less (fewer conversions in treatment): the running results keep what was shown.
    weaker = data(conversion((6_000, 600), (6_000, 640)))
    alone = analyse(sequential(), weaker, now=T0 + 60).metric("conversion").effects[0].effect
    second = analyse(sequential(), weaker, now=T0 + 60, previous=first).metric("conversion").effects[0].effect
    assert alone.pvalue > strong.pvalue
    assert second.pvalue == strong.pvalue
    assert (second.ci_low, second.ci_high) == (max(strong.ci_low, alone.ci_low), min(strong.ci_high, alone.ci_high))
    assert second.lift.ci_low == max(strong.lift.ci_low, alone.lift.ci_low)
    assert second.difference == alone.difference  # the estimate is today's
    # p ≤ α exactly when the interval excludes 0, at every look.
    for effect in (strong, alone, second):
        assert (effect.pvalue <= 0.05) == (effect.ci_low > 0 or effect.ci_high < 0)
    # Another window, or another experiment, starts afresh; so does a fixed-horizon analysis.
    other = dataclasses.replace(weaker, since=T0 + 1)
    assert analyse(sequential(), other, now=T0, previous=first).metric("conversion").effects[0].effect.pvalue == (
        pytest.approx(alone.pvalue)
    )
    renamed = analyse(sequential(), weaker, now=T0, previous=dataclasses.replace(first, experiment="other"))
    assert renamed.metric("conversion").effects[0].effect.pvalue == pytest.approx(alone.pvalue)
    fixed = analyse(definition(), weaker, now=T0, previous=first).metric("conversion").effects[0].effect
    assert not fixed.sequential and fixed.pvalue != second.pvalue


def test_a_look_before_any_conversion_says_nothing_and_does_not_pin_the_later_intervals() -> None:
    # Both arms constant (no conversion yet): a standard error of 0, and no information.
    empty = analyse(sequential(), data(conversion((50, 0), (50, 0)), captured=(50, 50)), now=T0)
    nothing = empty.metric("conversion").effects[0].effect
    assert math.isnan(nothing.ci_low) and math.isnan(nothing.ci_high) and math.isnan(nothing.pvalue)
    # Not "no difference": an interval of width 0 around 0 would have ruled out the mde.
    assert decision(empty) == "keep_running"
    later = data(conversion((300, 90), (300, 160)), captured=(300, 300))
    alone = analyse(sequential(), later, now=T0 + 60).metric("conversion").effects[0].effect
    running = analyse(sequential(), later, now=T0 + 60, previous=empty).metric("conversion").effects[0].effect
    assert (running.ci_low, running.ci_high, running.pvalue) == (alone.ci_low, alone.ci_high, alone.pvalue)
    assert running.ci_low <= running.difference <= running.ci_high


def three_arms(**changes: Any) -> Experiment:
    variants = {
        "control": {"weight": 0.4},
        "blue": {"weight": 0.3, "upstream": "http://blue"},
        "green": {"weight": 0.3, "upstream": "http://green"},
    }
    return definition(variants=variants, **changes)


SERVING_3 = (Serving(10_000, 0.01, 40.0), Serving(7_500, 0.01, 41.0), Serving(7_500, 0.01, 42.0))


def test_an_a_b_n_experiment_corrects_over_every_comparison_and_decides_per_treatment() -> None:
    metrics = {
        "conversion": MetricData.of_totals(
            [converted(4_000, 400), converted(3_000, 345), converted(3_000, 410)], per_unit=True
        )
    }
    snapshot = analyse(three_arms(), data(metrics, captured=(4_000, 3_000, 3_000), serving=SERVING_3), now=T0)
    effects = snapshot.metric("conversion").effects
    assert [e.variant for e in effects] == ["blue", "green"]
    raw = [compare_proportions(Proportion(4_000, 400), Proportion(3_000, k), alpha=0.05).pvalue for k in (345, 410)]
    # The family is every (metric, treatment): conversion and revenue (no data: p = 1) against blue and green.
    family = adjust([raw[0], math.nan, raw[1], math.nan], "holm")
    assert [e.effect.pvalue_adjusted for e in effects] == pytest.approx([family[0], family[2]], rel=1e-12)
    assert [d.variant for d in snapshot.decisions] == ["blue", "green"]
    assert [d.decision.decision for d in snapshot.decisions] == ["keep_running", "roll_out"]
    assert decision(snapshot) == "roll_out" and snapshot.decision.variants == ("green",)


def test_an_a_b_n_experiment_rolls_out_the_best_and_reverts_any_worse() -> None:
    both = {
        "conversion": MetricData.of_totals(
            [converted(4_000, 400), converted(3_000, 420), converted(3_000, 480)], per_unit=True
        )
    }
    snapshot = analyse(three_arms(), data(both, captured=(4_000, 3_000, 3_000), serving=SERVING_3), now=T0)
    assert [d.decision.decision for d in snapshot.decisions] == ["roll_out", "roll_out"]
    assert decision(snapshot) == "roll_out" and snapshot.decision.variants == ("green",)
    assert snapshot.decision.decision.reason.startswith("green (of blue, green): conversion is significantly better")
    worse = {
        "conversion": MetricData.of_totals(
            [converted(4_000, 400), converted(3_000, 240), converted(3_000, 480)], per_unit=True
        )
    }
    snapshot = analyse(three_arms(), data(worse, captured=(4_000, 3_000, 3_000), serving=SERVING_3), now=T0)
    assert decision(snapshot) == "revert" and snapshot.decision.variants == ("blue",)
    assert snapshot.decision.decision.reason.startswith("blue: conversion is significantly worse")
    even = {
        "conversion": MetricData.of_totals(
            [converted(40_000, 4_000), converted(30_000, 3_000), converted(30_000, 3_010)], per_unit=True
        )
    }
    snapshot = analyse(three_arms(), data(even, captured=(40_000, 30_000, 30_000), serving=SERVING_3), now=T0)
    assert [d.decision.decision for d in snapshot.decisions] == ["no_difference", "no_difference"]
    assert decision(snapshot) == "no_difference"
    early = {"conversion": MetricData.of_totals([converted(400, 40), converted(300, 30), converted(300, 31)])}
    snapshot = analyse(three_arms(), data(early, captured=(400, 300, 300), serving=SERVING_3), now=T0)
    assert decision(snapshot) == "keep_running"
    remaining = [d.decision.remaining for d in snapshot.decisions]
    assert snapshot.decision.decision.remaining == max((r for r in remaining if r is not None), key=sum)


def segmented(parts: dict[str, tuple[tuple[int, int], tuple[int, int]]]) -> MetricData:
    segments = {name: np.array([converted(*c), converted(*t)], dtype=float) for name, (c, t) in parts.items()}
    return MetricData(np.sum(list(segments.values()), axis=0), segments, per_unit=True)


def test_simpson_flags_a_pooled_effect_the_segments_reverse() -> None:
    # The treatment got most of the high-converting segment; within each segment it converts less.
    paradox = segmented({"low": ((4_000, 880), (1_000, 200)), "high": ((1_000, 620), (4_000, 2_400))})
    experiment = definition(segment_by="header:x-country")
    snapshot = analyse(experiment, data({"conversion": paradox}), now=T0)
    result = snapshot.metric("conversion").effects[0].simpson
    assert result is not None and result.flagged
    assert result.pooled > 0 and result.majority == -1
    assert [(s.name, s.units) for s in result.segments] == [("low", 5_000), ("high", 5_000)]
    consistent = segmented({"low": ((2_500, 500), (2_500, 560)), "high": ((2_500, 1_500), (2_500, 1_560))})
    calm = analyse(experiment, data({"conversion": consistent}), now=T0).metric("conversion").effects[0].simpson
    assert calm is not None and not calm.flagged and calm.majority == 1
    # No segment_by: no Simpson check at all.
    assert analyse(definition(), data({"conversion": paradox}), now=T0).metric("conversion").effects[0].simpson is None


def by_period(rates: list[tuple[float, float]], n: int = 5_000) -> MetricData:
    periods = np.array([[converted(n, round(n * c)), converted(n, round(n * t))] for c, t in rates], dtype=float)
    return MetricData(periods.sum(axis=0), {}, periods, per_unit=False)


def test_novelty_flags_an_effect_that_fades_with_exposure() -> None:
    fading = by_period([(0.10, 0.16), (0.10, 0.14), (0.10, 0.12), (0.10, 0.11), (0.10, 0.105), (0.10, 0.10)])
    result = analyse(definition(), data({"conversion": fading}), now=T0).metric("conversion").effects[0].novelty
    assert result is not None and result.flagged and result.slope < 0
    steady = by_period([(0.10, 0.12)] * 6)
    calm = analyse(definition(), data({"conversion": steady}), now=T0).metric("conversion").effects[0].novelty
    assert calm is not None and not calm.flagged
    # A loss that fades is a better-signed effect rising: not novelty.
    loss = definition(metrics={"primary": [{"name": "mae", "source": "label"}]})
    rising = by_period([(0.10, 0.16 - 0.01 * k) for k in range(6)])
    result = analyse(loss, data({"mae": rising}), now=T0).metric("mae").effects[0].novelty
    assert result is not None and not result.flagged and result.slope > 0
    # A per-unit metric (outcomes posted by unit) has no periods: no novelty check.
    per_unit = dataclasses.replace(fading, per_unit=True)
    assert analyse(definition(), data({"conversion": per_unit}), now=T0).metric("conversion").effects[0].novelty is None


def test_no_data_yet_keeps_running_with_nothing_computed() -> None:
    empty = ExperimentData(T0, Routing((0, 0), (0, 0)), (0, 0), (Serving(0, math.nan, math.nan),) * 2)
    snapshot = analyse(definition(), empty, now=T0)
    assert decision(snapshot) == "keep_running" and snapshot.decision.decision.remaining is None
    effect = snapshot.metric("conversion").effects[0]
    assert math.isnan(effect.effect.pvalue) and effect.effect.pvalue_adjusted == 1.0
    assert all(math.isnan(r.ratio.pvalue) and not r.ratio.mismatch for r in snapshot.ratios)
    assert not any(g.check.breached for g in snapshot.guardrails)


def test_shadow_experiments_and_mismatched_data_are_refused() -> None:
    shadow = definition(
        mode="shadow",
        assignment=None,
        variants={"control": None, "challenger": {"upstream": "http://challenger"}},
        metrics={"primary": [{"name": "accuracy", "source": "label"}]},
    )
    with pytest.raises(ValueError, match="shadow experiment"):
        analyse(shadow, data({}), now=T0)
    with pytest.raises(ValueError, match="the data has 3 arms"):
        analyse(definition(), data({}, captured=(1, 1, 1), serving=SERVING_3), now=T0)


def test_the_data_checks_its_shapes() -> None:
    with pytest.raises(ValueError, match="total must be"):
        MetricData(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="segment 'de' must be"):
        MetricData(np.zeros((2, len(SUMS))), {"de": np.zeros((3, len(SUMS)))})
    with pytest.raises(ValueError, match="every per-arm figure needs 2 entries"):
        ExperimentData(T0, Routing((1,), (1,)), (1, 1), SERVING)
    frozen = MetricData.of_totals(np.zeros((2, len(SUMS))))
    with pytest.raises(ValueError, match="read-only"):
        frozen.total[0, 0] = 1.0
