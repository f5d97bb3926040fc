"""Population Stability Index over the reference bins.

``PSI = Σ (cur_i − ref_i) · ln(cur_i / ref_i)``, with shares (each side sums
to 1). A share of 0 becomes :data:`EPSILON` before the subtraction and the
log, so an empty bin on either side gives a large but finite term instead of
``inf``. The verdict: ``"drift"`` when PSI > 0.2, ``"moderate"`` when
0.1 < PSI ≤ 0.2, otherwise ``"no_drift"``.

Usage::

    score = psi(np.array([0.5, 0.5]), np.array([0.4, 0.6]))  # 0.0405...
    psi_verdict(score)                                       # "no_drift"
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sidecar.drift.verdicts import Verdict

__all__ = ["EPSILON", "PSI_DRIFT", "PSI_MODERATE", "psi", "psi_verdict"]

EPSILON = 1e-4
PSI_DRIFT = 0.2
PSI_MODERATE = 0.1

Shares = npt.NDArray[np.float64]


def psi(reference: Shares, current: Shares) -> float:
    """PSI of two share vectors over the same bins."""
    ref = np.where(reference == 0.0, EPSILON, reference)
    cur = np.where(current == 0.0, EPSILON, current)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_verdict(score: float) -> Verdict:
    if score > PSI_DRIFT:
        return "drift"
    if score > PSI_MODERATE:
        return "moderate"
    return "no_drift"
