"""The two-proportion z test, with Newcombe's confidence interval for the difference.

With ``x_c`` of ``n_c`` control units and ``x_t`` of ``n_t`` treatment units
converting (``p̂ = x/n``)::

    Δ  = p̂_t − p̂_c
    p̄  = (x_t + x_c) / (n_t + n_c)                        (pooled under H₀: p_t = p_c)
    z  = Δ / sqrt(p̄(1 − p̄)(1/n_t + 1/n_c))
    p  = 2 · P(Z > |z|)

which is ``statsmodels.stats.proportion.proportions_ztest([x_t, x_c], [n_t, n_c])``.
560/5,000 against 500/5,000 gives z = 1.9491, p = 0.0513.

The interval is Newcombe's hybrid score interval (Newcombe, "Interval
estimation for the difference between independent proportions", Statistics
in Medicine 1998, method 10), built from each arm's Wilson interval
``[l, u]``::

    Wilson:   (p̂ + z²/2n ± z·sqrt(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n),   z = z_{1−α/2}
    CI = [Δ − sqrt((p̂_t − l_t)² + (u_c − p̂_c)²),  Δ + sqrt((u_t − p̂_t)² + (p̂_c − l_c)²)]

It is ``confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb")``,
statsmodels' default. Unlike the Wald interval ``Δ ± z·se`` it stays inside
[−1, 1] and keeps its coverage with few conversions or rates near 0 or 1,
which is where a new model's first hours are. The test uses the pooled
variance and the interval does not, so at the margin one may call a
difference significant and the other not; the decision reads the p-value
for significance and the interval only for "no difference".

Usage::

    two_proportions(Proportion(5000, 500), Proportion(5000, 560), alpha=0.05).statistic  # 1.9491
"""

from __future__ import annotations

import math

from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.comparison import Comparison
from sidecar.experiments.moments import Proportion

__all__ = ["two_proportions", "wilson"]


def two_proportions(control: Proportion, treatment: Proportion, *, alpha: float) -> Comparison:
    """The z test and Newcombe interval of ``treatment.rate − control.rate``; see the module docstring."""
    p_t, p_c = treatment.rate, control.rate
    difference = p_t - p_c
    if control.n < 1 or treatment.n < 1:
        return Comparison(difference, math.nan, math.nan, math.inf, math.nan, math.nan, math.nan, math.nan)
    se = math.sqrt(p_t * (1.0 - p_t) / treatment.n + p_c * (1.0 - p_c) / control.n)
    pooled = (treatment.successes + control.successes) / (treatment.n + control.n)
    se_null = math.sqrt(pooled * (1.0 - pooled) * (1.0 / treatment.n + 1.0 / control.n))
    z = difference / se_null if se_null > 0 else math.nan
    pvalue = float(2 * stats.norm.sf(abs(z))) if se_null > 0 else math.nan
    z_crit = float(stats.norm.isf(alpha / 2))
    low_t, high_t = wilson(treatment, z_crit)
    low_c, high_c = wilson(control, z_crit)
    ci_low = difference - math.hypot(p_t - low_t, high_c - p_c)
    ci_high = difference + math.hypot(high_t - p_t, p_c - low_c)
    return Comparison(difference, se, z, math.inf, pvalue, ci_low, ci_high, z_crit)


def wilson(arm: Proportion, z: float) -> tuple[float, float]:
    """Wilson's score interval for one arm's rate at the normal quantile ``z`` (Wilson, JASA 1927)."""
    n, p = arm.n, arm.rate
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return centre - half, centre + half
