"""Multiplicity: Holm's or Bonferroni's adjusted p-values, or none, over the primary and secondary metrics.

Testing m metrics at level α each flags about α·m of them by chance. Both
corrections keep the chance of flagging any metric without an effect (the
family-wise error rate) at most α, whatever the dependence between the tests:

- Bonferroni: ``p̃ᵢ = min(1, m·pᵢ)``;
- Holm (Holm, "A simple sequentially rejective multiple test procedure",
  Scand. J. Statistics 1979): with the p-values sorted ascending,
  ``p̃₍ᵢ₎ = max_{j≤i} min(1, (m − j + 1)·p₍ⱼ₎)``, never larger than
  Bonferroni's, so it rejects at least as much (:func:`sidecar.drift.holm.holm`);
- none: the p-values as they are.

They are ``statsmodels.stats.multitest.multipletests(p, method="holm" |
"bonferroni")[1]``. A NaN (a metric that could not be tested) counts as 1
and takes its place in m, so a missing metric never makes the others look
stronger.

Usage::

    adjust([0.01, 0.04, 0.03], "holm")        # (0.03, 0.06, 0.06)
    adjust([0.01, 0.04, 0.03], "bonferroni")  # (0.03, 0.12, 0.09)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sidecar.drift.holm import holm
from sidecar.experiments.definition import Correction

__all__ = ["adjust", "bonferroni"]


def adjust(pvalues: Sequence[float], correction: Correction) -> tuple[float, ...]:
    """The adjusted p-values, in the order given."""
    if correction == "holm":
        return holm(pvalues)
    if correction == "bonferroni":
        return bonferroni(pvalues)
    return tuple(1.0 if math.isnan(p) else p for p in pvalues)


def bonferroni(pvalues: Sequence[float]) -> tuple[float, ...]:
    """``min(1, m·p)`` for each p-value, NaN counting as 1."""
    m = len(pvalues)
    return tuple(1.0 if math.isnan(p) else min(1.0, m * p) for p in pvalues)
