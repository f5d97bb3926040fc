"""One metric's effect: the fixed tests as they are, the sequential ones consistent, the family adjusted."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]

from sidecar.experiments import sequential
from sidecar.experiments.compare import adjusted, compare_means, compare_proportions
from sidecar.experiments.lift import relative_lift
from sidecar.experiments.moments import Moments, Proportion
from sidecar.experiments.proportions import two_proportions
from sidecar.experiments.welch import welch


def test_a_fixed_horizon_mean_is_welch_with_its_lift() -> None:
    rng = np.random.default_rng(8)
    control, treatment = Moments.of_values(rng.normal(10, 2, 400)), Moments.of_values(rng.normal(10.5, 2, 300))
    effect = compare_means(control, treatment, alpha=0.05)
    test = welch(control, treatment, alpha=0.05)
    assert (effect.difference, effect.ci_low, effect.ci_high, effect.pvalue) == (
        test.difference,
        test.ci_low,
        test.ci_high,
        test.pvalue,
    )
    # The lift's interval takes the same critical value as the difference's: Welch's t quantile.
    assert effect.lift == relative_lift(control, treatment, critical=float(stats.t.isf(0.025, test.df)))
    assert not effect.sequential and math.isnan(effect.pvalue_adjusted)


def test_a_fixed_horizon_proportion_is_the_z_test_with_newcombes_interval() -> None:
    control, treatment = Proportion(5_000, 500), Proportion(5_000, 560)
    effect = compare_proportions(control, treatment, alpha=0.05)
    test = two_proportions(control, treatment, alpha=0.05)
    assert (effect.ci_low, effect.ci_high, effect.pvalue) == (test.ci_low, test.ci_high, test.pvalue)
    assert effect.lift.value == pytest.approx(0.12, rel=1e-12)


@pytest.mark.parametrize("kind", ["mean", "proportion"])
def test_a_sequential_effect_is_the_confidence_sequence(kind: str) -> None:
    if kind == "mean":
        control, treatment = Moments(4_000, 10.0, 4.0), Moments(4_000, 10.2, 4.4)
        effect = compare_means(control, treatment, alpha=0.05, sequential=True)
    else:
        control, treatment = Proportion(4_000, 400).moments(), Proportion(4_000, 470).moments()
        effect = compare_proportions(Proportion(4_000, 400), Proportion(4_000, 470), alpha=0.05, sequential=True)
    se = math.sqrt(control.variance / control.n + treatment.variance / treatment.n)
    if kind == "proportion":  # the unpooled standard error with variances p(1 − p), as a z test has it
        se = math.sqrt(0.1 * 0.9 / 4_000 + 0.1175 * 0.8825 / 4_000)
    r = sequential.radius(8_000, 0.05)
    assert effect.sequential
    assert (effect.ci_low, effect.ci_high) == pytest.approx((effect.difference - r * se, effect.difference + r * se))
    assert effect.pvalue == pytest.approx(sequential.pvalue(effect.difference, se, 8_000, 0.05), rel=1e-12)
    assert (effect.pvalue <= 0.05) == (effect.ci_low > 0 or effect.ci_high < 0)
    assert effect.lift == relative_lift(control, treatment, critical=r)
    # Wider than the fixed-horizon interval of the same data.
    fixed = compare_means(control, treatment, alpha=0.05)
    assert effect.ci_high - effect.ci_low > fixed.ci_high - fixed.ci_low


def test_the_family_is_adjusted_together() -> None:
    effects = [
        compare_proportions(Proportion(5_000, 500), Proportion(5_000, 560), alpha=0.05),
        compare_means(Moments(1_000, 3.0, 1.0), Moments(1_000, 3.1, 1.0), alpha=0.05),
        compare_means(Moments(1_000, 3.0, 1.0), Moments(1_000, 3.0, 1.0), alpha=0.05),
    ]
    raw = [e.pvalue for e in effects]
    for correction in ("holm", "bonferroni"):
        result = adjusted(effects, correction)
        assert [e.pvalue_adjusted for e in result] == pytest.approx(list(multipletests(raw, method=correction)[1]))
        assert [e.pvalue for e in result] == raw
    assert [e.pvalue_adjusted for e in adjusted(effects, "none")] == raw
