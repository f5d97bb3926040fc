"""Chi-square test of homogeneity on the 2×k table of reference and current counts.

Columns are the reference categories plus the unseen bucket. As in
``scipy.stats.chi2_contingency(table, correction=False)``, the expected count
of a cell is ``row total · column total / grand total``, the statistic is
``Σ (observed − expected)² / expected`` and the p-value comes from the
chi-square distribution with ``columns kept − 1`` degrees of freedom. Columns
empty in both rows are dropped first: scipy refuses them, and they carry no
evidence. With one column left the table says nothing: the statistic is 0 and
p = 1, as scipy returns for a single column.

Counts may be fractional: the current row is the window's weighted shares
scaled to its effective sample size (:mod:`sidecar.drift.ks`), the reference
row the profile's ratios scaled to its count.

Usage::

    stat, p, dof = chi2_homogeneity(np.array([500.0, 500.0, 0.0]), np.array([40.0, 60.0, 0.0]))
    # dof == 1: the third column is empty in both rows
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["chi2_homogeneity"]

Counts = npt.NDArray[np.float64]


def chi2_homogeneity(reference: Counts, current: Counts) -> tuple[float, float, int]:
    """``(statistic, p, degrees of freedom)`` for two count vectors over the same columns."""
    kept = (reference > 0.0) | (current > 0.0)
    table = np.stack((reference[kept], current[kept]))
    dof = table.shape[1] - 1
    if dof < 1:
        return 0.0, 1.0, 0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    # Imported here, not at the top: scipy.stats costs a process about 70 MiB, and the serving
    # process imports this module (the assembly checks the reference) but never evaluates drift.
    from scipy import stats  # type: ignore[import-untyped]

    return statistic, float(stats.chi2.sf(statistic, dof)), dof
