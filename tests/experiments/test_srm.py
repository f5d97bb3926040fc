"""Sample ratio mismatch equals scipy's chisquare, and its threshold catches a 1 % misrouting at 100k units."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.srm import SRM_ALPHA, srm


def test_the_issues_worked_example() -> None:
    result = srm([5_000, 5_200], [0.5, 0.5])
    assert round(result.pvalue, 4) == 0.0477
    assert not result.mismatch  # p > 0.001


@pytest.mark.parametrize(
    ("observed", "weights"),
    [([5_000, 5_200], [0.5, 0.5]), ([9_020, 980], [0.9, 0.1]), ([201, 330, 469], [0.2, 0.3, 0.5]), ([7, 0], [1, 1])],
)
def test_equals_scipy(observed: list[int], weights: list[float]) -> None:
    total = sum(observed)
    oracle = stats.chisquare(observed, [w / sum(weights) * total for w in weights])
    result = srm(observed, weights)
    assert result.statistic == pytest.approx(oracle.statistic, rel=1e-9)
    assert result.pvalue == pytest.approx(oracle.pvalue, rel=1e-9, abs=1e-300)
    assert result.mismatch == (oracle.pvalue < SRM_ALPHA)


def test_a_one_percent_imbalance_at_100k_units_is_flagged() -> None:
    # 1 % of 100,000 units routed to the wrong arm of a 50/50 split: 51,000 against 49,000.
    assert srm([51_000, 49_000], [0.5, 0.5]).mismatch
    # Simulated: routing with p = 0.51 is an expected 6.3 standard deviations off, and the threshold (p < 0.001)
    # is 3.3, so it is caught in 99.9 % of runs; with p = 0.5, flagged at the 1 in 1,000 the threshold allows.
    rng = np.random.default_rng(9)
    skewed = rng.binomial(100_000, 0.51, size=2_000)
    fair = rng.binomial(100_000, 0.5, size=2_000)
    assert sum(srm([k, 100_000 - k], [0.5, 0.5]).mismatch for k in skewed) >= 0.99 * 2_000
    assert sum(srm([k, 100_000 - k], [0.5, 0.5]).mismatch for k in fair) <= 8


def test_no_units_no_verdict() -> None:
    result = srm([0, 0], [0.5, 0.5])
    assert math.isnan(result.pvalue) and not result.mismatch
    with pytest.raises(ValueError, match="one count per weight"):
        srm([1, 2, 3], [0.5, 0.5])
