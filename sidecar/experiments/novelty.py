"""Novelty: does the treatment's effect fade with time since a unit's first exposure?

Users often try a new thing because it is new; an effect measured over the
first days then overstates the lasting one. Split the units' data by period
since their first exposure (day 0, day 1, ...), take the effect ``eₖ`` and its
standard error ``sₖ`` in each period k, and fit the weighted least-squares
line ``eₖ = a + b·k`` with weights ``wₖ = 1/sₖ²``::

    k̄ = Σwₖk / Σwₖ,   ē = Σwₖeₖ / Σwₖ,   S = Σwₖ(k − k̄)²
    b = Σwₖ(k − k̄)(eₖ − ē) / S,          se(b) = sqrt(φ / S)
    φ = max(1, Σwₖ(eₖ − a − b·k)² / (K − 2))
    t = b / se(b),   p = P(T_{K−2} < t)           one-sided: H₁ is b < 0

``1/S`` is the slope's variance when the ``sₖ`` are the whole story; ``φ``
widens it when the periods scatter about the line more than their standard
errors allow (day-of-week swings), and the t reference accounts for having
estimated it. This is meta-regression with the modified Knapp–Hartung
adjustment (Knapp & Hartung, Statistics in Medicine 2003; Röver, Knapp &
Friede, BMC Medical Research Methodology 2015), so a noisy but flat effect is
not called a trend. A downward trend (``p < α``) is flagged: the decision
should wait for the effect to settle. It needs three periods or more.
Pass effects signed so that better is positive (negated for a metric whose
goal is to decrease), so a fading improvement is a downward trend.

The slope and ``se(b)`` are statsmodels' ``WLS(e, [1, k], weights=w)``
``params[1]`` and ``bse[1]`` (with the scale floored at 1).

Usage::

    novelty([0.030, 0.021, 0.015, 0.011, 0.010], [0.003] * 5, alpha=0.05).flagged  # True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

__all__ = ["Novelty", "novelty"]


@dataclass(frozen=True, slots=True)
class Novelty:
    """The per-period effects' trend: ``slope`` per period, its ``standard_error``, the one-sided p-value.

    ``flagged`` when the effect falls significantly with time (``slope < 0``, ``pvalue < α``).

    Usage::

        result = novelty(effects, standard_errors, alpha=0.05)
        result.slope, result.pvalue, result.flagged
    """

    slope: float
    standard_error: float
    pvalue: float
    flagged: bool


def novelty(
    effects: Sequence[float],
    standard_errors: Sequence[float],
    *,
    alpha: float,
    periods: Sequence[float] | None = None,
) -> Novelty:
    """The trend of ``effects`` over ``periods`` (default 0, 1, 2, ...); periods without a positive se are left out."""
    e = np.asarray(effects, dtype=np.float64)
    s = np.asarray(standard_errors, dtype=np.float64)
    k = np.arange(e.size, dtype=np.float64) if periods is None else np.asarray(periods, dtype=np.float64)
    if not e.shape == s.shape == k.shape:
        raise ValueError(f"expected one standard error and period per effect: {e.shape}, {s.shape}, {k.shape}")
    usable = np.isfinite(e) & np.isfinite(s) & (s > 0) & np.isfinite(k)
    e, s, k = e[usable], s[usable], k[usable]
    if e.size < 3:
        return Novelty(math.nan, math.nan, math.nan, False)
    w = 1.0 / (s * s)
    k_bar = float(w @ k / w.sum())
    e_bar = float(w @ e / w.sum())
    spread = float(w @ (k - k_bar) ** 2)
    if not spread > 0:
        return Novelty(math.nan, math.nan, math.nan, False)  # every period the same: no trend to fit
    slope = float(w @ ((k - k_bar) * (e - e_bar))) / spread
    residuals = e - (e_bar + slope * (k - k_bar))
    df = e.size - 2
    scale = max(1.0, float(w @ residuals**2) / df)
    se = math.sqrt(scale / spread)
    pvalue = float(stats.t.cdf(slope / se, df))
    return Novelty(slope, se, pvalue, slope < 0 and pvalue < alpha)
