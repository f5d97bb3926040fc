"""Welch's t test for a difference of means, with its 1 − α confidence interval.

With control and treatment means ``m_c``, ``m_t``, per-unit variances ``s²_c``,
``s²_t`` and units ``n_c``, ``n_t``::

    Δ  = m_t − m_c
    se = sqrt(s²_t/n_t + s²_c/n_c)
    t  = Δ / se
    ν  = se⁴ / ((s²_t/n_t)²/(n_t − 1) + (s²_c/n_c)²/(n_c − 1))     (Welch–Satterthwaite)
    p  = 2 · P(T_ν > |t|)
    CI = Δ ± t_{ν, 1−α/2} · se

The variances need not be equal (Welch, "The generalization of Student's
problem when several different population variances are involved",
Biometrika 1947). It is ``scipy.stats.ttest_ind(treatment, control,
equal_var=False)`` and its ``confidence_interval(1 − α)``, from summaries
instead of raw values, so a ratio metric's delta-method variance
(:class:`~sidecar.experiments.moments.Moments`) goes through it too.

Usage::

    welch(Moments(1000, 10.0, 4.0), Moments(1000, 10.3, 4.4), alpha=0.05).pvalue
"""

from __future__ import annotations

import math

from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.comparison import Comparison
from sidecar.experiments.moments import Moments

__all__ = ["welch", "welch_df"]


def welch(control: Moments, treatment: Moments, *, alpha: float) -> Comparison:
    """Welch's test of ``treatment.mean − control.mean``; see the module docstring."""
    difference = treatment.mean - control.mean
    a = treatment.variance / treatment.n if treatment.n > 0 else math.nan
    b = control.variance / control.n if control.n > 0 else math.nan
    se = math.sqrt(a + b)
    df = welch_df(control, treatment)
    if not se > 0 or math.isnan(df):
        # Constant values in both arms, or too few units: no test can be made.
        return Comparison(difference, se, math.nan, df, math.nan, math.nan, math.nan, math.nan)
    t = difference / se
    critical = float(stats.t.isf(alpha / 2, df))
    half = critical * se
    pvalue = float(2 * stats.t.sf(abs(t), df))
    return Comparison(difference, se, t, df, pvalue, difference - half, difference + half, critical)


def welch_df(control: Moments, treatment: Moments) -> float:
    """The Welch–Satterthwaite degrees of freedom; NaN with fewer than two units in an arm."""
    if control.n < 2 or treatment.n < 2:
        return math.nan
    a = treatment.variance / treatment.n
    b = control.variance / control.n
    denominator = a * a / (treatment.n - 1) + b * b / (control.n - 1)
    return (a + b) ** 2 / denominator if denominator > 0 else math.nan
