"""The paired t test equals scipy's ttest_rel and its confidence interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.moments import Moments
from sidecar.experiments.paired import paired_t


@pytest.mark.parametrize(("seed", "n", "alpha"), [(0, 2, 0.05), (1, 30, 0.05), (2, 500, 0.1), (3, 20_000, 0.01)])
def test_equals_scipy(seed: int, n: int, alpha: float) -> None:
    rng = np.random.default_rng(seed)
    # Per-request losses of two models on the same requests: correlated, as paired values are.
    control = rng.gamma(2.0, 0.3, size=n)
    challenger = control * rng.lognormal(-0.05, 0.2, size=n)
    oracle = stats.ttest_rel(challenger, control)
    interval = oracle.confidence_interval(1 - alpha)
    result = paired_t(Moments.of_values(challenger - control), alpha=alpha)
    assert result.difference == pytest.approx(float(np.mean(challenger - control)), rel=1e-9)
    assert result.statistic == pytest.approx(oracle.statistic, rel=1e-9)
    assert result.df == oracle.df
    assert result.pvalue == pytest.approx(oracle.pvalue, rel=1e-9, abs=1e-15)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)


def test_undefined_without_two_requests_or_without_variation() -> None:
    one = paired_t(Moments.of_values([0.3]), alpha=0.05)
    assert one.difference == pytest.approx(0.3) and math.isnan(one.pvalue) and math.isnan(one.ci_low)
    same = paired_t(Moments.of_values(np.zeros(50)), alpha=0.05)
    assert same.difference == 0.0 and math.isnan(same.pvalue) and math.isnan(same.statistic)
