"""The distribution of per-request differences: numpy's own mean, deviation and quantiles over the valid pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidecar.experiments.differences import differences


def test_summary_of_the_pairs_with_a_number_on_both_sides() -> None:
    rng = np.random.default_rng(11)
    control = rng.random(1_000)
    challenger = np.clip(control + rng.normal(0.02, 0.05, size=1_000), 0.0, 1.0)
    control[::50] = math.nan  # no confidence on one side: the pair counts for nothing
    d = (challenger - control)[~np.isnan(control)]
    summary = differences(control, challenger)
    assert summary.n == 980
    assert summary.mean == pytest.approx(float(d.mean()), rel=1e-12)
    assert summary.standard_deviation == pytest.approx(float(np.std(d, ddof=1)), rel=1e-12)
    assert summary.mean_absolute == pytest.approx(float(np.mean(np.abs(d))), rel=1e-12)
    assert (summary.p05, summary.p50, summary.p95) == pytest.approx(
        tuple(float(q) for q in np.quantile(d, [0.05, 0.5, 0.95])), rel=1e-12
    )


def test_no_pairs_and_one_pair() -> None:
    empty = differences(np.array([]), np.array([]))
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.p95)
    one = differences(np.array([0.5]), np.array([0.75]))
    assert (one.n, one.mean, one.mean_absolute, one.p50) == (1, 0.25, 0.25, 0.25)
    assert math.isnan(one.standard_deviation)
