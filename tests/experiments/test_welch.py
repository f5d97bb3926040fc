"""Welch's test equals scipy's ttest_ind(equal_var=False) and its confidence interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.moments import Moments
from sidecar.experiments.welch import welch


@pytest.mark.parametrize(
    ("seed", "sizes", "alpha"),
    [(0, (300, 200), 0.05), (1, (20, 2_000), 0.05), (2, (5, 7), 0.1), (3, (10_000, 10_000), 0.01)],
)
def test_equals_scipy(seed: int, sizes: tuple[int, int], alpha: float) -> None:
    rng = np.random.default_rng(seed)
    control = rng.normal(10.0, 2.0, size=sizes[0])
    treatment = rng.lognormal(2.3, 0.4, size=sizes[1])
    oracle = stats.ttest_ind(treatment, control, equal_var=False)
    interval = oracle.confidence_interval(1 - alpha)
    for c, t in (
        (Moments.of_values(control), Moments.of_values(treatment)),
        (
            Moments.of_sums(control.size, float(control.sum()), float(control @ control)),
            Moments.of_sums(treatment.size, float(treatment.sum()), float(treatment @ treatment)),
        ),
    ):
        result = welch(c, t, alpha=alpha)
        assert result.difference == pytest.approx(treatment.mean() - control.mean(), rel=1e-9)
        assert result.statistic == pytest.approx(oracle.statistic, rel=1e-9)
        assert result.df == pytest.approx(oracle.df, rel=1e-9)
        assert result.pvalue == pytest.approx(oracle.pvalue, rel=1e-9, abs=1e-15)
        assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)


def test_undefined_when_there_is_nothing_to_compare() -> None:
    constant = welch(Moments(10, 1.0, 0.0), Moments(10, 1.0, 0.0), alpha=0.05)
    assert math.isnan(constant.pvalue) and math.isnan(constant.ci_low) and constant.difference == 0.0
    assert math.isnan(welch(Moments(1, 1.0, math.nan), Moments(10, 2.0, 1.0), alpha=0.05).pvalue)
