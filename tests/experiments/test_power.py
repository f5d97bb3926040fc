"""MDE and sample size: statsmodels' NormalIndPower, Cohen's d for means, Cohen's h for proportions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower  # type: ignore[import-untyped]
from statsmodels.stats.proportion import proportion_effectsize  # type: ignore[import-untyped]

from sidecar.experiments.moments import Moments, Proportion
from sidecar.experiments.power import (
    cohens_h,
    detectable_effect,
    power_for_means,
    power_for_proportions,
    sample_size,
)

CASES = [(0.0326294, 0.05, 0.8, 1.0), (0.1, 0.01, 0.9, 0.25), (0.02, 0.1, 0.95, 1 / 9), (0.05, 0.05, 0.8, 9.0)]


def test_the_issues_worked_example() -> None:
    # 10 % → 11 % at α 0.05 and power 0.8: about 14,744 units per arm.
    h = cohens_h(0.10, 0.11)
    assert h == pytest.approx(proportion_effectsize(0.11, 0.10), rel=1e-12)
    assert round(sample_size(h, alpha=0.05, power=0.8)) == 14_744
    result = power_for_proportions(
        Proportion(5_000, 500), Proportion(5_000, 520), mde=0.01, alpha=0.05, power=0.8, ratio=1
    )
    assert result.required == (14_745, 14_745)  # 14,744.1 rounded up: whole units
    assert result.remaining == (9_745, 9_745)


@pytest.mark.parametrize(("effect", "alpha", "power", "ratio"), CASES)
def test_sample_size_equals_solve_power(effect: float, alpha: float, power: float, ratio: float) -> None:
    n = sample_size(effect, alpha=alpha, power=power, ratio=ratio)
    expected = NormalIndPower().solve_power(effect, alpha=alpha, power=power, ratio=ratio)
    assert n == pytest.approx(expected, rel=1e-9)
    # And the defining equation: statsmodels' power at that n is the power asked for.
    assert NormalIndPower().power(effect, n, alpha, ratio=ratio) == pytest.approx(power, abs=1e-12)


@pytest.mark.parametrize(
    ("n", "alpha", "power", "ratio"), [(14_744, 0.05, 0.8, 1.0), (500, 0.01, 0.9, 0.25), (20, 0.1, 0.5, 3)]
)
def test_the_detectable_effect_has_exactly_the_power(n: float, alpha: float, power: float, ratio: float) -> None:
    effect = detectable_effect(n, alpha=alpha, power=power, ratio=ratio)
    # statsmodels' own solve for the effect stops at its optimiser's tolerance (about 1e-7 relative),
    # so it is matched loosely, and the power equation, which it solves, exactly.
    assert NormalIndPower().power(effect, n, alpha, ratio=ratio) == pytest.approx(power, abs=1e-12)
    assert effect == pytest.approx(
        NormalIndPower().solve_power(None, nobs1=n, alpha=alpha, power=power, ratio=ratio), rel=1e-5
    )


def test_a_mean_uses_cohens_d_over_the_pooled_standard_deviation() -> None:
    rng = np.random.default_rng(4)
    c, t = rng.normal(10, 2, size=1_000), rng.normal(10.1, 3, size=800)
    control, treatment = Moments.of_values(c), Moments.of_values(t)
    result = power_for_means(control, treatment, mde=0.25, alpha=0.05, power=0.8, ratio=1.0)
    sd = math.sqrt((999 * c.var(ddof=1) + 799 * t.var(ddof=1)) / 1_798)
    needed = NormalIndPower().solve_power(0.25 / sd, alpha=0.05, power=0.8, ratio=1.0)
    assert result.required == (math.ceil(needed), math.ceil(needed))
    assert result.remaining == (max(0, math.ceil(needed) - 1_000), max(0, math.ceil(needed) - 800))
    d_now = NormalIndPower().solve_power(None, nobs1=1_000, alpha=0.05, power=0.8, ratio=0.8)
    assert result.mde == pytest.approx(d_now * sd, rel=1e-5)
    assert NormalIndPower().power(result.mde / sd, 1_000, 0.05, ratio=0.8) == pytest.approx(0.8, abs=1e-12)


def test_a_proportions_mde_is_the_rate_change_with_the_detectable_h() -> None:
    control, treatment = Proportion(8_000, 800), Proportion(2_000, 210)
    result = power_for_proportions(control, treatment, mde=0.01, alpha=0.05, power=0.8, ratio=0.25)
    h = detectable_effect(8_000, alpha=0.05, power=0.8, ratio=0.25)
    assert cohens_h(0.1, 0.1 + result.mde) == pytest.approx(h, rel=1e-9)
    needed = NormalIndPower().solve_power(proportion_effectsize(0.11, 0.10), alpha=0.05, power=0.8, ratio=0.25)
    assert result.required == (math.ceil(needed), math.ceil(needed * 0.25))
    # Near 1, the detectable change is downward.
    high = power_for_proportions(Proportion(100, 99), Proportion(100, 99), mde=0.05, alpha=0.05, power=0.8, ratio=1)
    assert high.mde > 0 and high.required is not None


def test_unknown_without_data() -> None:
    assert (
        power_for_means(Moments(1, 1.0, math.nan), Moments(5, 1.0, 1.0), mde=1, alpha=0.05, power=0.8, ratio=1).required
        is None
    )
    assert (
        power_for_means(Moments(5, 1.0, 0.0), Moments(5, 1.0, 0.0), mde=1, alpha=0.05, power=0.8, ratio=1).required
        is None
    )
    assert math.isnan(
        power_for_proportions(Proportion(0, 0), Proportion(5, 1), mde=0.1, alpha=0.05, power=0.8, ratio=1).mde
    )
    assert sample_size(0.0, alpha=0.05, power=0.8) == math.inf
    assert math.isnan(detectable_effect(0, alpha=0.05, power=0.8))
