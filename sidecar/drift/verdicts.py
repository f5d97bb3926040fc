"""The verdicts every drift detector returns, and the one p-value rule.

- ``"insufficient_data"``: fewer samples than the minimum on either side; the
  score and p-value are then None, never a number that looks like no drift.
- ``"drift"`` / ``"no_drift"``: KS and chi-square, drift when p < α
  (:data:`ALPHA` unless the verdict rule sets another); the effect sizes,
  drift at their threshold (:mod:`sidecar.drift.rule`).
- ``"moderate"``: PSI, for 0.1 < PSI ≤ 0.2 (:mod:`sidecar.drift.psi`), and a
  feature's combined verdict (:mod:`sidecar.drift.rule`).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ALPHA", "Verdict", "pvalue_verdict"]

Verdict = Literal["drift", "moderate", "no_drift", "insufficient_data"]

ALPHA = 0.05


def pvalue_verdict(pvalue: float, alpha: float = ALPHA) -> Verdict:
    return "drift" if pvalue < alpha else "no_drift"
