"""What a two-sample test of treatment against control returns: the difference, its test and its interval."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Comparison"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment minus control, with its test and its 1 − α interval.

    ``standard_error`` is the unpooled standard error of ``difference``, the
    one the relative lift and the confidence sequence build on; ``statistic``
    is the test's (Welch's t, or the pooled two-proportion z), ``df`` its
    degrees of freedom (infinite for a z) and ``critical`` its two-sided
    1 − α quantile, the one the lift's interval takes too. NaN throughout when a variance is
    undefined (fewer than two units in an arm, or none).

    Usage::

        result = welch(control, treatment, alpha=0.05)
        result.difference, result.pvalue, (result.ci_low, result.ci_high)
    """

    difference: float
    standard_error: float
    statistic: float
    df: float
    pvalue: float
    ci_low: float
    ci_high: float
    critical: float
