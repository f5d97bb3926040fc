"""How often the challenger predicts the class control predicts, with Wilson's interval.

Over the paired rows of a classifier, the agreement rate is the share whose
two predictions are the same class (compared as the performance metrics
compare classes, :func:`~sidecar.performance.class_key`; a row where either
prediction is not a class counts for neither). Its 1 − α interval is
Wilson's score interval, which stays inside [0, 1] and keeps its coverage
near 0 and 1 where the normal approximation's does not (Wilson, "Probable
inference, the law of succession, and statistical inference", JASA 1927)::

    z = Φ⁻¹(1 − α/2),   centre = (p̂ + z²/2n) / (1 + z²/n),
    half = z · sqrt(p̂(1 − p̂)/n + z²/4n²) / (1 + z²/n)

(``statsmodels.stats.proportion.proportion_confint(k, n, alpha, method="wilson")``).

Usage::

    agreement(["a", "b", "a"], ["a", "b", "b"], alpha=0.05)   # Agreement(n=3, agreed=2, rate=0.667, ...)
    wilson(940, 1000, alpha=0.05)                              # (0.9234..., 0.9527...)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats  # type: ignore[import-untyped]

from sidecar.performance import class_key

__all__ = ["Agreement", "agreement", "wilson"]


@dataclass(frozen=True, slots=True)
class Agreement:
    """``agreed`` of ``n`` paired rows predicted the same class: the ``rate`` and its Wilson interval (NaN for
    no rows).

    Usage::

        result = agreement(control, challenger, alpha=0.05)
        result.rate, (result.ci_low, result.ci_high)
    """

    n: int
    agreed: int
    rate: float
    ci_low: float
    ci_high: float


def wilson(successes: int, n: int, *, alpha: float) -> tuple[float, float]:
    """Wilson's 1 − ``alpha`` score interval for ``successes`` out of ``n``; NaN for ``n`` 0."""
    if n < 1:
        return math.nan, math.nan
    z = float(stats.norm.isf(alpha / 2))
    z2 = z * z
    p = successes / n
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    return centre - half, centre + half


def agreement(control: Sequence[Any], challenger: Sequence[Any], *, alpha: float) -> Agreement:
    """The share of rows whose two predictions are one class, over the rows where both are classes."""
    if len(control) != len(challenger):
        raise ValueError(f"expected paired predictions: {len(control)} and {len(challenger)}")
    n = agreed = 0
    for ours, theirs in zip(control, challenger, strict=True):
        a, b = class_key(ours), class_key(theirs)
        if a is None or b is None:
            continue
        n += 1
        agreed += a == b
    low, high = wilson(agreed, n, alpha=alpha)
    return Agreement(n, agreed, agreed / n if n else math.nan, low, high)
