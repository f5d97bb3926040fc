"""Jensen–Shannon distance between the reference and current shares of a categorical feature.

``JS = √((KL(P ‖ M) + KL(Q ‖ M)) / 2)`` with ``M = (P + Q) / 2`` and natural
logarithms, as ``scipy.spatial.distance.jensenshannon(p, q)`` computes it and
Evidently uses it (drift at 0.1). It lies between 0 (the same shares) and
√ln 2 ≈ 0.833 (no category in common); a term whose share is 0 counts 0.

From the bins it is exact, not an approximation, with one exception. Every
category the reference did not have falls in the ``__other__`` bin. Where
the reference's share is 0, a category's term is ``q · ln 2`` on the current
side and 0 on the other, linear in q, so lumping such categories together
changes nothing. Only when the reference itself has an ``__other__`` share
(the profile kept its most frequent categories and lumped the rest) does
lumping hide differences within that bin; the distance is then a lower
bound of the one on the raw values.

Usage::

    jensenshannon(np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.5, 0.1]))  # 0.1935...
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["jensenshannon"]

Shares = npt.NDArray[np.float64]


def jensenshannon(reference: Shares, current: Shares) -> float:
    """The JS distance (natural log) of two share vectors over the same bins, each summing to 1."""
    middle = (reference + current) / 2.0
    divergence = (_kl(reference, middle) + _kl(current, middle)) / 2.0
    # Rounding can leave a tiny negative divergence for equal shares.
    return math.sqrt(max(divergence, 0.0))


def _kl(p: Shares, m: Shares) -> float:
    """KL(p ‖ m) for m ≥ p/2: wherever p > 0, m > 0 too."""
    kept = p > 0.0
    return float(np.sum(p[kept] * np.log(p[kept] / m[kept])))
