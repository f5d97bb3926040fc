"""Sample ratio mismatch: are the units per arm what the weights say?

A chi-square goodness-of-fit test of the observed units per arm ``Oᵢ``
against ``Eᵢ = wᵢ · ΣO``::

    χ² = Σ (Oᵢ − Eᵢ)² / Eᵢ,   k − 1 degrees of freedom,   p = P(χ²_{k−1} > χ²)

(``scipy.stats.chisquare(observed, expected)``). A mismatch means the arms
are not comparable (a redirect that drops some users, a crash in one
variant, a bot filter), and no effect estimate can be trusted, so
``p < 0.001`` (:data:`SRM_ALPHA`) marks the experiment invalid. The strict
level is usual (Fabijan et al., "Diagnosing Sample Ratio Mismatch in Online
Controlled Experiments", KDD 2019): the check runs at every evaluation, and
a false alarm stops a good experiment. 5,000 against 5,200 at 50/50 gives
p = 0.0477: not a mismatch. Run it on the routing counters and on the
captured records apart: a routing bug shows in both, a sampling bug only in
the second.

Usage::

    srm([5000, 5200], [0.5, 0.5])  # SampleRatio(statistic=3.92, pvalue=0.0477, mismatch=False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from scipy import stats  # type: ignore[import-untyped]

__all__ = ["SRM_ALPHA", "SampleRatio", "srm"]

SRM_ALPHA: Final = 0.001


@dataclass(frozen=True, slots=True)
class SampleRatio:
    """The chi-square test of the units per arm against the weights; ``mismatch`` when ``pvalue < SRM_ALPHA``.

    Usage::

        srm([51_000, 49_000], [0.5, 0.5]).mismatch  # True: 1 % of 100k units in the wrong arm
    """

    statistic: float
    pvalue: float
    mismatch: bool


def srm(observed: Sequence[float], weights: Sequence[float]) -> SampleRatio:
    """Test ``observed`` units per arm against ``weights`` (normalised); no units: NaN and no mismatch."""
    if len(observed) != len(weights) or len(observed) < 2:
        raise ValueError(f"expected one count per weight, two or more: {list(observed)} and {list(weights)}")
    total = math.fsum(observed)
    scale = math.fsum(weights)
    if total <= 0:
        return SampleRatio(math.nan, math.nan, False)
    expected = [w / scale * total for w in weights]
    statistic = math.fsum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    pvalue = float(stats.chi2.sf(statistic, len(observed) - 1))
    return SampleRatio(statistic, pvalue, pvalue < SRM_ALPHA)
