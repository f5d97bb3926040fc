"""Novelty: the trend of the per-period effect, against statsmodels' WLS, flagged when it fades and only then."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm  # type: ignore[import-untyped]
from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.novelty import novelty


def _wls(effects: np.ndarray, ses: np.ndarray) -> tuple[float, float, float]:
    """statsmodels' slope, its standard error with the scale floored at 1, and the residual scale."""
    design = sm.add_constant(np.arange(effects.size, dtype=float))
    fit = sm.WLS(effects, design, weights=1 / ses**2).fit()
    fixed = sm.WLS(effects, design, weights=1 / ses**2).fit(cov_type="fixed scale", cov_kwds={"scale": 1.0})
    se = fit.bse[1] if fit.scale > 1 else fixed.bse[1]
    return float(fit.params[1]), float(se), float(fit.scale)


@pytest.mark.parametrize("seed", range(4))
def test_equals_weighted_least_squares(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ses = rng.uniform(0.002, 0.006, size=10)
    # Seeds 0 and 1: periods that scatter more than their standard errors (scale > 1); 2 and 3: less.
    spread = 3.0 if seed < 2 else 0.3
    effects = 0.02 - 0.001 * np.arange(10) + rng.normal(0, spread * ses)
    slope, se, scale = _wls(effects, ses)
    assert (scale > 1) == (seed < 2)
    result = novelty(effects.tolist(), ses.tolist(), alpha=0.05)
    assert result.slope == pytest.approx(slope, rel=1e-9)
    assert result.standard_error == pytest.approx(se, rel=1e-9)
    assert result.pvalue == pytest.approx(stats.t.cdf(slope / se, 8), rel=1e-9)


def test_a_decaying_effect_is_flagged_and_a_steady_one_is_not() -> None:
    rng = np.random.default_rng(23)
    days = np.arange(14)
    ses = np.full(14, 0.004)
    # A +6 % effect on day 0 that halves every three days towards a lasting +1 %.
    decaying = 0.01 + 0.05 * 0.5 ** (days / 3) + rng.normal(0, 0.004, size=14)
    steady = 0.02 + rng.normal(0, 0.004, size=14)
    assert novelty(decaying.tolist(), ses.tolist(), alpha=0.05).flagged
    result = novelty(steady.tolist(), ses.tolist(), alpha=0.05)
    assert not result.flagged and result.pvalue > 0.05
    # Over many seeded steady effects, flagged at no more than the α it is tested at.
    flags = [
        novelty((0.02 + np.random.default_rng(s).normal(0, 0.004, size=14)).tolist(), ses.tolist(), alpha=0.05).flagged
        for s in range(1_000)
    ]
    assert sum(flags) / 1_000 <= 0.065
    # A rising effect (primacy rather than novelty) is not this flag's business.
    assert not novelty((0.01 + 0.002 * days).tolist(), ses.tolist(), alpha=0.05).flagged


def test_too_few_periods_or_none_usable() -> None:
    assert not novelty([0.03, 0.01], [0.001, 0.001], alpha=0.05).flagged
    result = novelty([0.03, 0.02, math.nan, 0.01], [0.001, 0.0, 0.001, 0.001], alpha=0.05)
    assert math.isnan(result.slope) and not result.flagged  # two usable periods left
    assert math.isnan(novelty([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], alpha=0.05, periods=[5, 5, 5]).slope)
    with pytest.raises(ValueError, match="one standard error and period per effect"):
        novelty([1.0, 2.0, 3.0], [1.0, 1.0], alpha=0.05)
