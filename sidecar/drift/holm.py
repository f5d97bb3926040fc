"""Holm's step-down correction of p-values for multiplicity.

With m tests, a raw p < 0.05 flags about 0.05 · m of them by chance: one
unshifted feature in twenty. Holm's procedure keeps the chance of flagging
any unshifted one at most α, whatever the dependence between the tests, and
rejects at least as much as Bonferroni does.

Sort the p-values ascending, ``p₍₁₎ ≤ … ≤ p₍ₘ₎``. The adjusted p-value of the
i-th is ``max_{j ≤ i} min(1, (m − j + 1) · p₍ⱼ₎)``; a test is significant at
level α when its adjusted p-value is below α, which is Holm's rule of
rejecting ``p₍₁₎ < α/m``, then ``p₍₂₎ < α/(m − 1)``, and so on until the
first that fails. A NaN (a test that could not be computed) counts as 1: no
evidence.

Usage::

    holm([0.01, 0.04, 0.03, 0.005])  # (0.03, 0.06, 0.06, 0.02): the first and last are below 0.05
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["holm"]


def holm(pvalues: Sequence[float]) -> tuple[float, ...]:
    """The Holm-adjusted p-values, in the order given."""
    m = len(pvalues)
    clean = [1.0 if math.isnan(p) else p for p in pvalues]
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=clean.__getitem__)):
        # The running maximum keeps the adjusted values in the order of the raw ones.
        running = max(running, min(1.0, (m - rank) * clean[i]))
        adjusted[i] = running
    return tuple(adjusted)
