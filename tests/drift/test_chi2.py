"""Chi-square homogeneity against scipy.stats.chi2_contingency(correction=False), to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.drift import chi2_homogeneity


@pytest.mark.parametrize("seed", range(10))
def test_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    ref = rng.integers(1, 500, k).astype(float)
    cur = rng.integers(1, 500, k).astype(float)
    expected = stats.chi2_contingency(np.stack((ref, cur)), correction=False)
    statistic, pvalue, dof = chi2_homogeneity(ref, cur)
    assert statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert dof == expected.dof


def test_fractional_counts_match_scipy() -> None:
    # The sidecar's rows: reference ratios times its count, weighted current shares times Kish n.
    ref = np.array([0.25, 0.5, 0.25]) * 10_000
    cur = np.array([0.2, 0.5, 0.3]) * 812.5
    expected = stats.chi2_contingency(np.stack((ref, cur)), correction=False)
    statistic, pvalue, _ = chi2_homogeneity(ref, cur)
    assert statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9)


def test_columns_empty_in_both_rows_are_dropped() -> None:
    ref = np.array([120.0, 0.0, 80.0, 0.0, 40.0])
    cur = np.array([30.0, 0.0, 50.0, 5.0, 10.0])
    kept = np.array([True, False, True, True, True])  # column 3 is empty in one row only: it stays
    expected = stats.chi2_contingency(np.stack((ref[kept], cur[kept])), correction=False)
    statistic, pvalue, dof = chi2_homogeneity(ref, cur)
    assert dof == 3 == expected.dof
    assert statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    with pytest.raises(ValueError, match="zero element"):
        stats.chi2_contingency(np.stack((ref, cur)), correction=False)  # why they must go


def test_one_column_left_says_nothing() -> None:
    ref = np.array([100.0, 0.0, 0.0])
    cur = np.array([40.0, 0.0, 0.0])
    assert chi2_homogeneity(ref, cur) == (0.0, 1.0, 0)
    expected = stats.chi2_contingency(np.array([[100.0], [40.0]]), correction=False)
    assert (expected.statistic, expected.pvalue, expected.dof) == (0.0, 1.0, 0)
