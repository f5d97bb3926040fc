"""One analysis of an experiment, immutable: what ``GET /api/v1/experiments`` and the metrics show.

:func:`~.analysis.analyse` makes an :class:`ExperimentSnapshot` per
evaluation; :mod:`.view` renders it. It is made of the statistics modules'
own results (:class:`~.moments.Moments`, :class:`~.compare.Effect`,
:class:`~.power.Power`, :class:`~.srm.SampleRatio`, :class:`~.novelty.Novelty`,
:class:`~.simpson.Simpson`, :class:`~.guardrails.GuardrailCheck`,
:class:`~.decision.Decision`), each tagged with what it is about: an arm, a
treatment, a stage, a metric.

Usage::

    snapshot = analyse(experiment, data, now=time.time(), previous=snapshot)
    snapshot.decision.decision.decision          # "roll_out"
    snapshot.decision.variants                   # ("treatment",)
    snapshot.metric("conversion").effects[0].effect.pvalue_adjusted
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from sidecar.experiments.compare import Effect
from sidecar.experiments.data import Serving
from sidecar.experiments.decision import Decision
from sidecar.experiments.definition import Correction, Goal, Kind, Source
from sidecar.experiments.guardrails import GuardrailCheck
from sidecar.experiments.moments import Moments
from sidecar.experiments.novelty import Novelty
from sidecar.experiments.power import Power
from sidecar.experiments.simpson import Simpson
from sidecar.experiments.srm import SampleRatio

__all__ = [
    "METHODS",
    "ROLES",
    "STAGES",
    "ArmSummary",
    "ExperimentDecision",
    "ExperimentSnapshot",
    "GuardrailResult",
    "Method",
    "MetricReport",
    "RatioCheck",
    "Role",
    "Stage",
    "TreatmentDecision",
    "TreatmentEffect",
]

Stage = Literal["assignment", "capture"]
STAGES: Final[tuple[Stage, ...]] = get_args(Stage)
Role = Literal["primary", "secondary"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
# How a metric's arms were compared: the two-proportion z test, Welch's t on the per-unit means, or Welch's t
# on the delta method's per-exposure ratio.
Method = Literal["proportion", "mean", "ratio"]
METHODS: Final[tuple[Method, ...]] = get_args(Method)


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """One arm: its definition, the requests routed to it (by unit, by coin), its captured units, its serving.

    Usage::

        ArmSummary("treatment", 0.1, False, routed_keyed=9_870, routed_randomised=12, captured=480, serving=...)
    """

    name: str
    weight: float
    control: bool
    routed_keyed: int
    routed_randomised: int
    captured: int
    serving: Serving


@dataclass(frozen=True, slots=True)
class RatioCheck:
    """The sample-ratio check of one stage: the units counted per arm, and the chi-square test of them.

    Usage::

        RatioCheck("capture", (5_000, 5_200), srm([5_000, 5_200], [0.5, 0.5]))
    """

    stage: Stage
    observed: tuple[int, ...]
    ratio: SampleRatio


@dataclass(frozen=True, slots=True)
class TreatmentEffect:
    """One treatment against control on one metric: the effect, the power, and the novelty and Simpson checks
    (None when they do not apply: a per-unit metric has no periods, an experiment without ``segment_by`` no
    segments).

    Usage::

        TreatmentEffect("treatment", effect, power, novelty=None, simpson=None)
    """

    variant: str
    effect: Effect
    power: Power
    novelty: Novelty | None
    simpson: Simpson | None


@dataclass(frozen=True, slots=True)
class MetricReport:
    """One tested metric: its definition, how its arms were compared, each arm's moments, each treatment's effect.

    ``variants`` names the arms, in the definition's order, as ``arms`` (their
    moments) and ``exposures`` (Σx per arm: the exposures, or labelled rows,
    behind the units) go.

    Usage::

        report = snapshot.metric("conversion")
        [arm.mean for arm in report.arms], report.effects[0].effect.difference
    """

    name: str
    role: Role
    source: Source
    kind: Kind
    goal: Goal
    mde: float
    per_unit: bool
    method: Method
    variants: tuple[str, ...]
    arms: tuple[Moments, ...]
    exposures: tuple[float, ...]
    effects: tuple[TreatmentEffect, ...]

    def effect(self, variant: str) -> TreatmentEffect:
        return next(e for e in self.effects if e.variant == variant)


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """One guardrail of one treatment.

    Usage::

        GuardrailResult("treatment", check("error_rate", control=0.01, treatment=0.012, max_increase=0.01))
    """

    variant: str
    check: GuardrailCheck


@dataclass(frozen=True, slots=True)
class TreatmentDecision:
    """The decision for one treatment against control (:func:`~.decision.decide`).

    Usage::

        TreatmentDecision("treatment", Decision("keep_running", "...", (4210, 4210)))
    """

    variant: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class ExperimentDecision:
    """The experiment's decision and the treatments it names (the one to roll out; those to revert).

    Usage::

        ExperimentDecision(Decision("roll_out", "treatment-b: ..."), variants=("treatment-b",))
    """

    decision: Decision
    variants: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExperimentSnapshot:
    """One analysis of an experiment; see the module docstring.

    ``computed_at`` is when it was made and ``since`` where its window starts
    (Unix seconds); ``key``, ``alpha``, ``correction``, ``power`` and
    ``sequential`` are the definition's, as applied.

    Usage::

        snapshot.decision.decision.decision, [d.decision.decision for d in snapshot.decisions]
    """

    experiment: str
    computed_at: float
    since: float
    key: str | None  # the assignment key, "header:x-user-id"; None: a coin per request
    alpha: float
    correction: Correction
    power: float
    sequential: bool
    arms: tuple[ArmSummary, ...]
    ratios: tuple[RatioCheck, ...]
    metrics: tuple[MetricReport, ...]
    guardrails: tuple[GuardrailResult, ...]
    decisions: tuple[TreatmentDecision, ...]
    decision: ExperimentDecision

    def metric(self, name: str) -> MetricReport:
        return next(m for m in self.metrics if m.name == name)

    def ratio(self, stage: Stage) -> RatioCheck:
        return next(r for r in self.ratios if r.stage == stage)
