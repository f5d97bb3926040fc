"""Per-arm summaries: sums, values, proportions and delta-method ratios agree with their direct definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidecar.experiments.moments import Moments, Proportion


@pytest.mark.parametrize("seed", range(3))
def test_sums_and_values_give_numpys_mean_and_variance(seed: int) -> None:
    values = np.random.default_rng(seed).gamma(2.0, 3.0, size=1_000)
    expected = (values.size, values.mean(), values.var(ddof=1))
    from_values = Moments.of_values(values)
    from_sums = Moments.of_sums(values.size, float(values.sum()), float(values @ values))
    for moments in (from_values, from_sums):
        assert (moments.n, moments.mean, moments.variance) == pytest.approx(expected, rel=1e-9)
    assert from_values.standard_error == pytest.approx(math.sqrt(values.var(ddof=1) / values.size), rel=1e-12)


def test_a_proportion_is_the_moments_of_its_zeros_and_ones() -> None:
    ones = np.r_[np.ones(560), np.zeros(4_440)]
    moments = Proportion(5_000, 560).moments()
    assert (moments.mean, moments.variance) == pytest.approx((ones.mean(), ones.var(ddof=1)), rel=1e-12)
    assert Proportion(5_000, 560).rate == 0.112


def test_the_ratio_variance_is_that_of_the_linearised_values() -> None:
    # Deng et al.'s delta method equals the sample variance of (Yᵢ − R·Xᵢ) / X̄, computed here directly.
    rng = np.random.default_rng(3)
    requests = rng.poisson(4.0, size=2_000) + 1
    revenue = rng.gamma(2.0, 1.5, size=2_000) * requests * rng.uniform(0.5, 1.5, size=2_000)
    moments = Moments.of_ratio(revenue, requests)
    ratio = revenue.sum() / requests.sum()
    linearised = (revenue - ratio * requests) / requests.mean()
    assert moments.n == 2_000
    assert moments.mean == pytest.approx(ratio, rel=1e-12)
    assert moments.variance == pytest.approx(linearised.var(ddof=1), rel=1e-9)


def test_the_ratio_interval_covers_the_true_ratio_as_often_as_it_says() -> None:
    # Units differ in their number of requests and in their own rate: the per-request variance would be
    # wrong here, the per-unit delta method is not. 2,000 seeded experiments of 500 units each.
    rng = np.random.default_rng(11)
    experiments, units = 2_000, 500
    requests = rng.poisson(3.0, size=(experiments, units)) + 1
    rate = rng.beta(2.0, 8.0, size=(experiments, units))  # true ratio: E[rate] = 0.2
    successes = rng.binomial(requests, rate)
    y, x = successes.astype(float), requests.astype(float)
    covered = 0
    for i in range(experiments):
        moments = Moments.of_ratio(y[i], x[i])
        covered += abs(moments.mean - 0.2) <= 1.959964 * moments.standard_error
    assert covered / experiments == pytest.approx(0.95, abs=0.015)


def test_pooling_segments_is_pooling_their_values() -> None:
    rng = np.random.default_rng(5)
    parts = [rng.normal(mu, sigma, size=n) for mu, sigma, n in ((1.0, 1.0, 300), (4.0, 2.0, 50), (0.0, 0.5, 1))]
    pooled = Moments.pooled([Moments.of_values(p) for p in parts] + [Moments.of_values([])])
    everything = np.concatenate(parts)
    assert (pooled.n, pooled.mean, pooled.variance) == pytest.approx(
        (everything.size, everything.mean(), everything.var(ddof=1)), rel=1e-9
    )


def test_too_few_units_give_nan_not_an_error() -> None:
    assert Moments.of_sums(0, 0.0, 0.0).n == 0 and math.isnan(Moments.of_sums(0, 0.0, 0.0).mean)
    one = Moments.of_sums(1, 3.0, 9.0)
    assert one.mean == 3.0 and math.isnan(one.variance)
    assert math.isnan(Moments.of_values([2.0]).variance)
    assert math.isnan(Moments.of_ratio([1.0], [2.0]).variance) and Moments.of_ratio([1.0], [2.0]).mean == 0.5
    assert math.isnan(Moments.of_ratio([0.0, 0.0], [0.0, 0.0]).mean)
    assert math.isnan(Proportion(0, 0).moments().mean)
    assert math.isnan(Moments.pooled([]).mean)
    # Constant values: a variance of exactly 0, never a tiny negative from cancellation.
    assert Moments.of_sums(3, 0.3, 0.03).variance >= 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        Moments.of_ratio([1.0, 2.0], [1.0])
