"""Simpson's paradox: does the pooled effect point the other way from the segments'?

With ``segment_by``, the effect ``eₛ = m_t,ₛ − m_c,ₛ`` is computed in every
segment s beside the pooled one ``e`` (each arm's segments merged). Pooling
reverses the segments' verdict when the arms' mix of segments differs (a
ramp-up that gave the treatment mostly weekend traffic, a variant that
crashes for one country and so keeps only the others), the classic case
being Simpson, "The interpretation of interaction in contingency tables"
(JRSS B 1951). The segments vote with their units ``nₛ`` (both arms)::

    majority = sign( Σₛ nₛ · sign(eₛ) )
    flagged  = sign(e) ≠ 0, majority ≠ 0, sign(e) ≠ majority, and the pooled p < α

The last condition keeps noise quiet: under no effect at all the pooled sign
and the segments' vote disagree often enough by chance, and a flag means
"the significant pooled result you would act on is reversed within
segments", which is the case that changes a decision. Segments are read
from the definition (their names are label values the evaluator bounds);
a segment with an empty arm has no effect and no vote.

Usage::

    result = simpson({"de": (c_de, t_de), "fr": (c_fr, t_fr)}, alpha=0.05)
    result.pooled, result.majority, result.flagged
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.experiments.moments import Moments
from sidecar.experiments.welch import welch

__all__ = ["Segment", "Simpson", "simpson"]


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment's effect (treatment − control) and its vote's weight, its units in both arms.

    Usage::

        Segment("de", effect=-0.01, units=12_000)
    """

    name: str
    effect: float
    units: int


@dataclass(frozen=True, slots=True)
class Simpson:
    """The pooled effect and its p-value, the segments', the units-weighted majority sign, and the flag.

    Usage::

        simpson(segments, alpha=0.05).flagged
    """

    pooled: float
    pvalue: float
    segments: tuple[Segment, ...]
    majority: int
    flagged: bool


def simpson(segments: Mapping[str, tuple[Moments, Moments]], *, alpha: float) -> Simpson:
    """Compare the pooled effect with the per-segment ones; ``segments`` maps name to (control, treatment)."""
    control = Moments.pooled([c for c, _ in segments.values()])
    treatment = Moments.pooled([t for _, t in segments.values()])
    pooled = welch(control, treatment, alpha=alpha)
    parts = tuple(Segment(name, t.mean - c.mean, c.n + t.n) for name, (c, t) in segments.items())
    vote = sum(s.units * _sign(s.effect) for s in parts if not math.isnan(s.effect))
    majority = _sign(vote)
    sign = _sign(pooled.difference)
    flagged = sign != 0 and majority != 0 and sign != majority and pooled.pvalue < alpha
    return Simpson(pooled.difference, pooled.pvalue, parts, majority, flagged)


def _sign(value: float) -> int:
    return int(value > 0) - int(value < 0)  # int(): numpy's booleans do not subtract
