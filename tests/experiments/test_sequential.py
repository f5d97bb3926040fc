"""The confidence sequence and its always-valid p-value: Waudby-Smith et al.'s formulas, and their consistency."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.sequential import TUNING, mixing_variance, pvalue, radius


def test_the_formulas() -> None:
    # ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*, written out for α = 0.05 and N* = 5,000.
    rho2 = (-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 5_000
    assert mixing_variance(0.05) == pytest.approx(rho2, rel=1e-15)
    # The normal-mixture boundary at N units: sqrt(2(Nρ² + 1)/(Nρ²) · ln(sqrt(Nρ² + 1)/α)) standard errors.
    n = 12_000
    assert radius(n, 0.05) == pytest.approx(
        math.sqrt(2 * (n * rho2 + 1) / (n * rho2) * math.log(math.sqrt(n * rho2 + 1) / 0.05)), rel=1e-15
    )
    # The p-value is 1 over the mixture martingale exp(ρ²S²/(2(Nρ² + 1))) / sqrt(Nρ² + 1), S = sqrt(N)·z.
    z = 3.5
    martingale = math.exp(rho2 * n * z * z / (2 * (n * rho2 + 1))) / math.sqrt(n * rho2 + 1)
    assert pvalue(3.5, 1.0, n, 0.05) == pytest.approx(1 / martingale, rel=1e-12)


def test_the_p_value_is_below_alpha_exactly_when_the_sequence_excludes_zero() -> None:
    rng = np.random.default_rng(2)
    for alpha in (0.01, 0.05, 0.1):
        for n in (100, 5_000, 1e6):
            boundary = radius(n, alpha)
            assert pvalue(boundary, 1.0, n, alpha) == pytest.approx(alpha, rel=1e-9)
            for z in rng.uniform(0, 2 * boundary, size=50):
                assert (pvalue(z, 1.0, n, alpha) <= alpha) == (z >= boundary)


def test_wider_than_the_fixed_interval_and_tightest_at_the_tuning_size() -> None:
    fixed = float(stats.norm.isf(0.025))
    assert radius(TUNING, 0.05) == pytest.approx(3.0352, abs=1e-4)
    assert all(radius(n, 0.05) > fixed for n in (10, 1_000, 1e5, 1e8))
    # ρ is chosen so that, among tuning parameters, N* = N gives the narrowest sequence at N.
    at = 20_000
    assert radius(at, 0.05, tuning=at) < min(radius(at, 0.05, tuning=t) for t in (at / 2, at * 0.9, at * 1.1, at * 2))


def test_edges() -> None:
    assert pvalue(0.0, 1.0, 1_000, 0.05) == 1.0  # capped: no evidence at all
    assert pvalue(1e6, 1.0, 1_000, 0.05) == 0.0  # in logs, no overflow
    assert math.isnan(pvalue(1.0, 0.0, 1_000, 0.05))
    assert math.isnan(radius(0, 0.05))
