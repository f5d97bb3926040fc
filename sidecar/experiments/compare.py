"""One metric, treatment against control: the absolute effect with its interval and p-value, and the lift.

:func:`compare_means` (Welch, :mod:`.welch`) and :func:`compare_proportions`
(the two-proportion z test with Newcombe's interval, :mod:`.proportions`)
return an :class:`Effect`: the difference ``treatment − control`` with its
1 − α interval and p-value, and the relative lift with its delta-method
interval (:mod:`.lift`). With ``sequential=True`` the interval is the
confidence sequence and the p-value the always-valid one
(:mod:`.sequential`), for the absolute effect and the lift alike, and
``pvalue ≤ α`` exactly when the interval excludes 0. :func:`adjusted` fills in
``pvalue_adjusted`` over the family of primary and secondary metrics
(:mod:`.correction`).

Usage::

    effects = [compare_proportions(c, t, alpha=0.05), compare_means(c2, t2, alpha=0.05)]
    effects = adjusted(effects, "holm")
    effects[0].difference, (effects[0].ci_low, effects[0].ci_high), effects[0].pvalue_adjusted
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.experiments import sequential as seq
from sidecar.experiments.comparison import Comparison
from sidecar.experiments.correction import adjust
from sidecar.experiments.definition import Correction
from sidecar.experiments.lift import Lift, relative_lift
from sidecar.experiments.moments import Moments, Proportion
from sidecar.experiments.proportions import two_proportions
from sidecar.experiments.welch import welch

__all__ = ["Effect", "adjusted", "compare_means", "compare_proportions"]


@dataclass(frozen=True, slots=True)
class Effect:
    """A metric's effect: ``difference`` = treatment − control, its interval, p-values, and the relative ``lift``.

    ``pvalue_adjusted`` is NaN until :func:`adjusted` sets it.

    Usage::

        effect = compare_means(control, treatment, alpha=0.05)
        effect.ci_low > 0  # significantly higher in the treatment
    """

    control: Moments
    treatment: Moments
    difference: float
    ci_low: float
    ci_high: float
    pvalue: float
    lift: Lift
    sequential: bool
    pvalue_adjusted: float = math.nan


def compare_means(
    control: Moments, treatment: Moments, *, alpha: float, sequential: bool = False, tuning: float = seq.TUNING
) -> Effect:
    """Welch's test, or the confidence sequence, of a mean (or a delta-method ratio)."""
    return _effect(welch(control, treatment, alpha=alpha), control, treatment, alpha, sequential, tuning)


def compare_proportions(
    control: Proportion, treatment: Proportion, *, alpha: float, sequential: bool = False, tuning: float = seq.TUNING
) -> Effect:
    """The two-proportion z test with Newcombe's interval, or the confidence sequence, of a rate."""
    test = two_proportions(control, treatment, alpha=alpha)
    return _effect(test, control.moments(), treatment.moments(), alpha, sequential, tuning)


def adjusted(effects: Sequence[Effect], correction: Correction) -> tuple[Effect, ...]:
    """The effects with ``pvalue_adjusted`` set, over all of them as one family."""
    pvalues = adjust([e.pvalue for e in effects], correction)
    return tuple(dataclasses.replace(e, pvalue_adjusted=p) for e, p in zip(effects, pvalues, strict=True))


def _effect(
    test: Comparison,
    control: Moments,
    treatment: Moments,
    alpha: float,
    sequential: bool,
    tuning: float,
) -> Effect:
    if not sequential:
        lift = relative_lift(control, treatment, critical=test.critical)
        return Effect(control, treatment, test.difference, test.ci_low, test.ci_high, test.pvalue, lift, False)
    n = control.n + treatment.n
    r = seq.radius(n, alpha, tuning)
    lift = relative_lift(control, treatment, critical=r)
    if not test.standard_error > 0:
        # Both arms constant so far (no conversion yet in either): a sequence of width 0 would claim the
        # effect known exactly, and the running intersection (analysis._running) would keep that claim
        # for good. No information yet is NaN, which the intersection skips and no decision reads.
        return Effect(control, treatment, test.difference, math.nan, math.nan, math.nan, lift, True)
    half = r * test.standard_error
    pvalue = seq.pvalue(test.difference, test.standard_error, n, alpha, tuning)
    return Effect(
        control, treatment, test.difference, test.difference - half, test.difference + half, pvalue, lift, True
    )
