"""The decision: what the experiment's data say to do, in the first rule that applies.

=================  ==========================================================================
``invalid``        a sample ratio mismatch (:mod:`.srm`, p < 0.001), on assignment or on
                   capture: the arms are not comparable, so no effect is trusted
``revert``         a primary metric significantly worse (adjusted p < α, the effect against
                   its goal), or a guardrail breached (:mod:`.guardrails`)
``roll_out``       a primary metric significantly better after the correction, and no
                   guardrail breached
``no_difference``  every primary metric's interval excludes effects of size ``mde``:
                   ``−mde < ci_low`` and ``ci_high < mde``
``keep_running``   none of the above; ``remaining`` says how many more units per arm
                   (control, treatment) the primary metric furthest from its n needs
=================  ==========================================================================

"Significantly" reads each primary metric's adjusted p-value (:func:`.compare.adjusted`,
over primary + secondary), and "interval" its 1 − α interval, or with ``sequential: true``
the always-valid ones, so the decision can be read at any time. Secondary metrics inform but
never decide.

Usage::

    decide(ratios=[srm_assigned, srm_captured], primary=[Primary("conversion", effect, "increase", 0.01, power)],
           guardrails=[check("error_rate", control=0.01, treatment=0.012, max_increase=0.01)], alpha=0.05)
    # Decision(decision='keep_running', reason='...', remaining=(4210, 4210))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from sidecar.experiments.compare import Effect
from sidecar.experiments.definition import Goal
from sidecar.experiments.guardrails import GuardrailCheck
from sidecar.experiments.power import Power
from sidecar.experiments.srm import SRM_ALPHA, SampleRatio

__all__ = ["DECISIONS", "Decision", "DecisionName", "Primary", "decide"]

DecisionName = Literal["invalid", "revert", "roll_out", "no_difference", "keep_running"]
DECISIONS: Final[tuple[DecisionName, ...]] = get_args(DecisionName)


@dataclass(frozen=True, slots=True)
class Primary:
    """A primary metric as the decision reads it: its effect (adjusted), its goal, its mde and its power.

    Usage::

        Primary("conversion", effect, goal="increase", mde=0.01, power=power)
    """

    name: str
    effect: Effect
    goal: Goal
    mde: float
    power: Power

    @property
    def direction(self) -> int:
        """+1 when the treatment is better, −1 when worse, 0 when equal or unknown; by the goal."""
        d = self.effect.difference
        sign = int(d > 0) - int(d < 0)  # int(): numpy's booleans do not subtract
        return sign if self.goal == "increase" else -sign

    def significant(self, alpha: float) -> bool:
        return self.effect.pvalue_adjusted < alpha


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision, a sentence saying why, and for ``keep_running`` the units per arm still needed.

    Usage::

        decision.decision   # "roll_out"
        decision.reason     # "conversion is significantly better (adjusted p = 0.003) and no guardrail is breached"
    """

    decision: DecisionName
    reason: str
    remaining: tuple[int, int] | None = None


def decide(
    *,
    ratios: Sequence[SampleRatio],
    primary: Sequence[Primary],
    guardrails: Sequence[GuardrailCheck],
    alpha: float,
) -> Decision:
    """The first rule of the module docstring that applies."""
    mismatched = [r for r in ratios if r.mismatch]
    if mismatched:
        worst = min(r.pvalue for r in mismatched)
        return Decision("invalid", f"sample ratio mismatch (p = {worst:.3g} < {SRM_ALPHA:g}): the arms differ")
    worse = [p for p in primary if p.significant(alpha) and p.direction < 0]
    breached = [g for g in guardrails if g.breached]
    if worse or breached:
        reasons = [f"{p.name} is significantly worse (adjusted p = {p.effect.pvalue_adjusted:.3g})" for p in worse]
        reasons += [f"{g.name} rose by {g.increase:.4g}, more than the {g.max_increase:g} allowed" for g in breached]
        return Decision("revert", "; ".join(reasons))
    better = [p for p in primary if p.significant(alpha) and p.direction > 0]
    if better:
        reasons = [f"{p.name} is significantly better (adjusted p = {p.effect.pvalue_adjusted:.3g})" for p in better]
        return Decision("roll_out", "; ".join(reasons) + ", and no guardrail is breached")
    if primary and all(-p.mde < p.effect.ci_low and p.effect.ci_high < p.mde for p in primary):
        return Decision("no_difference", "every primary metric's interval excludes effects of its mde")
    known = [p.power.remaining for p in primary if p.power.remaining is not None]
    remaining = max(known, key=sum) if known else None
    return Decision("keep_running", "no primary metric is conclusive yet", remaining)
