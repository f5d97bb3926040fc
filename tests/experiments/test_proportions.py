"""The two-proportion z test equals statsmodels' proportions_ztest, its interval confint_proportions_2indep."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportions_ztest,
)

from sidecar.experiments.moments import Proportion
from sidecar.experiments.proportions import two_proportions


def test_the_issues_worked_example() -> None:
    result = two_proportions(Proportion(5_000, 500), Proportion(5_000, 560), alpha=0.05)
    assert round(result.statistic, 4) == 1.9491
    assert round(result.pvalue, 4) == 0.0513
    assert result.difference == pytest.approx(0.012, rel=1e-12)


@pytest.mark.parametrize(
    ("control", "treatment", "alpha"),
    [
        ((5_000, 500), (5_000, 560), 0.05),
        ((40, 3), (50, 0), 0.05),  # no conversion at all in one arm
        ((60, 10), (50, 50), 0.1),  # every unit converts in one arm
        ((900, 7), (1_000, 1), 0.01),
        ((120_000, 13_000), (30_000, 3_100), 0.05),
    ],
)
def test_equals_statsmodels(control: tuple[int, int], treatment: tuple[int, int], alpha: float) -> None:
    (n_c, x_c), (n_t, x_t) = control, treatment
    result = two_proportions(Proportion(n_c, x_c), Proportion(n_t, x_t), alpha=alpha)
    z, p = proportions_ztest([x_t, x_c], [n_t, n_c])
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff", alpha=alpha)
    assert result.statistic == pytest.approx(z, rel=1e-9)
    assert result.pvalue == pytest.approx(p, rel=1e-9, abs=1e-15)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-9, abs=1e-15)
    # The unpooled standard error, for the lift and the confidence sequence.
    p_c, p_t = x_c / n_c, x_t / n_t
    assert result.standard_error == pytest.approx(math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c), rel=1e-12)


def test_no_test_without_units_or_without_variation() -> None:
    assert math.isnan(two_proportions(Proportion(0, 0), Proportion(10, 1), alpha=0.05).pvalue)
    none_convert = two_proportions(Proportion(100, 0), Proportion(100, 0), alpha=0.05)
    assert math.isnan(none_convert.pvalue) and none_convert.difference == 0.0
