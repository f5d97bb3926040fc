"""The verdict rule: has a feature, a model output or the label drifted?

PSI alone ignores the sample size: a 0.3σ shift gives PSI ≈ 0.1, "moderate"
at most, though 3,000 records show it beyond doubt. A p-value alone ignores
the magnitude: at large windows it flags shifts far too small to matter, and
at p < 0.05 it flags one unshifted feature in twenty by chance. The
``combined`` rule asks both questions:

1. **Is the shift real?** The feature's test (KS for a numeric one,
   chi-square for a categorical one), its p-value corrected by Holm's
   procedure across the tests of one evaluation (:mod:`.holm`), below
   ``alpha``.
2. **Is it material?** Its effect size at least its threshold: the
   Wasserstein-1 distance over the reference standard deviation for a
   numeric feature (:mod:`.wasserstein`), the Jensen–Shannon distance for a
   categorical one (:mod:`.jensenshannon`); 0.1 for both, as in Evidently.

``"drift"`` when the shift is real and material, or when PSI > 0.2 (the
playbook's rule, kept as a sufficient condition); ``"moderate"`` when it is
real and PSI > 0.1 or the effect is above half its threshold; otherwise
``"no_drift"``. The ``psi`` rule is PSI's verdict alone, as before this rule
existed (and as the fleet-wide recording rules in ``deploy/prometheus/``
compute it). Either way every score, p-value and effect is reported.

Usage::

    rule = VerdictRule()                       # combined, alpha 0.05, thresholds 0.1
    rule.verdict(psi=0.095, corrected_pvalue=1e-30, effect="wasserstein", size=0.31)  # "drift"
    VerdictRule("psi").verdict(psi=0.095, corrected_pvalue=1e-30, effect="wasserstein", size=0.31)  # "no_drift"
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from sidecar.drift.psi import PSI_DRIFT, PSI_MODERATE, psi_verdict
from sidecar.drift.verdicts import ALPHA, Verdict

__all__ = ["DEFAULT_RULE", "EFFECT_THRESHOLD", "RULES", "Effect", "Rule", "VerdictRule"]

# SIDECAR_DRIFT_VERDICT's values; sidecar/config.py spells the same Literal, and a test pins the two equal.
Rule = Literal["combined", "psi"]
RULES: tuple[Rule, ...] = get_args(Rule)
Effect = Literal["wasserstein", "jensenshannon"]
# Evidently's thresholds for its normed Wasserstein and its Jensen-Shannon distance.
EFFECT_THRESHOLD = 0.1


@dataclass(frozen=True)
class VerdictRule:
    """How a verdict is reached (see module doc); ``alpha`` and the thresholds are settings.

    ``wasserstein`` and ``jensenshannon`` are the effect sizes at which a real
    shift is material.
    """

    name: Rule = "combined"
    alpha: float = ALPHA
    wasserstein: float = EFFECT_THRESHOLD
    jensenshannon: float = EFFECT_THRESHOLD

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"the verdict rule must be one of {', '.join(RULES)}, not {self.name!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be between 0 and 1, not {self.alpha!r}")
        for effect in get_args(Effect):
            threshold = self.threshold(effect)
            if not (math.isfinite(threshold) and threshold > 0.0):
                raise ValueError(f"the {effect} threshold must be a positive number, not {threshold!r}")

    def threshold(self, effect: Effect) -> float:
        """The effect size at which a real shift is material."""
        return self.wasserstein if effect == "wasserstein" else self.jensenshannon

    def significant(self, corrected_pvalue: float) -> Verdict:
        """The test's own verdict: drift when its corrected p-value is below alpha."""
        return "drift" if corrected_pvalue < self.alpha else "no_drift"

    def material(self, effect: Effect, size: float) -> Verdict:
        """The effect size's own verdict: drift at or above its threshold."""
        return "drift" if size >= self.threshold(effect) else "no_drift"

    def verdict(self, *, psi: float, corrected_pvalue: float, effect: Effect, size: float) -> Verdict:
        """The verdict of one feature, output or label that has enough data."""
        if self.name == "psi":
            return psi_verdict(psi)
        real = corrected_pvalue < self.alpha
        threshold = self.threshold(effect)
        if psi > PSI_DRIFT or (real and size >= threshold):
            return "drift"
        if real and (psi > PSI_MODERATE or size > threshold / 2.0):
            return "moderate"
        return "no_drift"


# The default: the combined rule at alpha 0.05 and Evidently's thresholds.
DEFAULT_RULE = VerdictRule()
