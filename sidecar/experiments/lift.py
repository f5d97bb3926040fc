"""The relative lift ``m_t / m_c − 1`` and its interval, by the delta method.

A ratio of two independent means is not normal, but to first order (the
delta method) its variance is::

    lift = m_t / m_c − 1
    Var(lift) ≈ s²_t / (n_t · m_c²) + m_t² · s²_c / (n_c · m_c⁴)
    CI = lift ± c · sqrt(Var(lift))

with ``c`` the critical value of the comparison it goes with: Welch's
``t_{ν, 1−α/2}``, the normal ``z_{1−α/2}`` for proportions, or a confidence
sequence's radius (:mod:`.sequential`). This is the interval GrowthBook's
frequentist engine reports for relative effects (docs.growthbook.io,
"Statistical Details"); see also Deng, Knoblich & Lu (KDD 2018). It is
undefined (NaN) when the control mean is 0.

Usage::

    relative_lift(control, treatment, critical=1.96)  # Lift(value=0.12, standard_error=..., ci_low=..., ci_high=...)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sidecar.experiments.moments import Moments

__all__ = ["Lift", "relative_lift"]


@dataclass(frozen=True, slots=True)
class Lift:
    """A relative change, ``0.12`` for +12 %, with its delta-method standard error and interval.

    Usage::

        Lift(0.12, 0.05, 0.02, 0.22).value
    """

    value: float
    standard_error: float
    ci_low: float
    ci_high: float


def relative_lift(control: Moments, treatment: Moments, *, critical: float) -> Lift:
    """``treatment.mean / control.mean − 1`` with the interval ``± critical · se``; see the module docstring."""
    m_c, m_t = control.mean, treatment.mean
    if control.n < 1 or treatment.n < 1 or m_c == 0 or math.isnan(m_c):
        return Lift(math.nan, math.nan, math.nan, math.nan)
    lift = m_t / m_c - 1.0
    variance = treatment.variance / (treatment.n * m_c**2) + m_t**2 * control.variance / (control.n * m_c**4)
    se = math.sqrt(variance)
    return Lift(lift, se, lift - critical * se, lift + critical * se)
