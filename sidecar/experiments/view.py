"""The body of ``GET /api/v1/experiments`` and the experiment metrics' samples, from an :class:`ExperimentSnapshot`.

Rendering only: every figure comes from the snapshot. The body's keys are
fixed, in this order, and a number that could not be computed (too few units,
no variance) is ``null``. Times are RFC 3339 (UTC, milliseconds) as in the
other endpoints::

    {"experiment": "ranker-v2", "computed_at": "...", "since": "...", "assignment_key": "header:x-user-id",
     "alpha": 0.05, "correction": "holm", "power": 0.8, "sequential": true,
     "decision": {"decision": "roll_out", "reason": "...", "variants": ["treatment"], "remaining": null},
     "arms": [{"name", "weight", "control", "routed": {"keyed", "randomised"}, "captured_units",
               "requests", "error_rate", "latency_p95_ms"}, ...],
     "srm": {"assignment": {"observed": [...], "statistic", "pvalue", "mismatch"}, "capture": {...}},
     "metrics": [{"name", "role", "source", "kind", "goal", "mde", "per_unit", "method",
                  "arms": [{"variant", "n", "mean", "variance", "exposures"}, ...],
                  "effects": [{"variant", "difference", "ci_low", "ci_high", "lift", "lift_standard_error",
                               "lift_ci_low", "lift_ci_high", "pvalue", "pvalue_adjusted", "sequential",
                               "mde_now", "required", "remaining", "novelty", "simpson"}, ...]}, ...],
     "guardrails": [{"variant", "name", "control", "treatment", "increase", "max_increase", "breached"}, ...],
     "decisions": [{"variant", "decision", "reason", "remaining"}, ...]}

``required`` and ``remaining`` are ``{"control": n, "treatment": n}`` (units
per arm) or ``null``; ``novelty`` is ``{"slope", "standard_error",
"pvalue", "flagged"}`` or ``null`` (a per-unit metric), ``simpson``
``{"pooled", "pvalue", "majority", "flagged", "segments": [{"name", "effect",
"units"}]}`` or ``null`` (no ``segment_by``). An effect's ``ci_low`` and
``ci_high`` bound the absolute ``difference`` (treatment − control);
``lift_ci_*`` bound the relative ``lift``. :func:`snapshot_from_json` reads a
body back, so a body round-trips: ``snapshot_json(snapshot_from_json(body)) == body``.

The metric samples' label values come from the definition alone (variant and
metric names) and from fixed lists (:data:`EFFECT_STATS`, the stages, the
decisions), never from payloads: :func:`label_sets` lists them all, so the
children can be bound at start-up.

Usage::

    body = snapshot_json(evaluator.snapshot)
    for (variant, metric, stat), value in effect_samples(snapshot):
        gauge.labels(model, experiment, variant, metric, stat).set(value)
"""

from __future__ import annotations

import math
from typing import Any, Final

from sidecar.experiments.compare import Effect
from sidecar.experiments.data import Serving
from sidecar.experiments.decision import DECISIONS, Decision
from sidecar.experiments.definition import Experiment
from sidecar.experiments.guardrails import GuardrailCheck
from sidecar.experiments.lift import Lift
from sidecar.experiments.moments import Moments
from sidecar.experiments.novelty import Novelty
from sidecar.experiments.power import Power
from sidecar.experiments.simpson import Segment, Simpson
from sidecar.experiments.snapshot import (
    STAGES,
    ArmSummary,
    ExperimentDecision,
    ExperimentSnapshot,
    GuardrailResult,
    MetricReport,
    RatioCheck,
    TreatmentDecision,
    TreatmentEffect,
)
from sidecar.experiments.srm import SampleRatio
from sidecar.records import parse_rfc3339, rfc3339

__all__ = [
    "EFFECT_STATS",
    "decision_samples",
    "effect_samples",
    "label_sets",
    "snapshot_from_json",
    "snapshot_json",
    "srm_samples",
]

# The stat label of mlsidecar_experiment_effect: the relative lift and its interval, the p-values, and the
# absolute difference and its interval.
EFFECT_STATS: Final = (
    "lift", "ci_low", "ci_high", "pvalue", "pvalue_adjusted", "difference", "difference_ci_low", "difference_ci_high",
)  # fmt: skip


def snapshot_json(snapshot: ExperimentSnapshot) -> dict[str, Any]:
    """The body of ``GET /api/v1/experiments``; see the module docstring."""
    return {
        "experiment": snapshot.experiment,
        "computed_at": rfc3339(snapshot.computed_at),
        "since": rfc3339(snapshot.since),
        "assignment_key": snapshot.key,
        "alpha": snapshot.alpha,
        "correction": snapshot.correction,
        "power": snapshot.power,
        "sequential": snapshot.sequential,
        "decision": {**_decision(snapshot.decision.decision), "variants": list(snapshot.decision.variants)},
        "arms": [_arm(arm) for arm in snapshot.arms],
        "srm": {ratio.stage: _ratio(ratio) for ratio in snapshot.ratios},
        "metrics": [_metric(report) for report in snapshot.metrics],
        "guardrails": [{"variant": g.variant, **_guardrail(g.check)} for g in snapshot.guardrails],
        "decisions": [{"variant": d.variant, **_decision(d.decision)} for d in snapshot.decisions],
    }


def snapshot_from_json(body: dict[str, Any]) -> ExperimentSnapshot:
    """The snapshot a :func:`snapshot_json` body shows (times to the millisecond); ``KeyError`` or
    ``ValueError`` for a body it did not make."""
    arms = tuple(_arm_from(a) for a in body["arms"])
    control = next(a.name for a in arms if a.control)
    decision = body["decision"]
    return ExperimentSnapshot(
        experiment=body["experiment"],
        computed_at=parse_rfc3339(body["computed_at"]),
        since=parse_rfc3339(body["since"]),
        key=body["assignment_key"],
        alpha=body["alpha"],
        correction=body["correction"],
        power=body["power"],
        sequential=body["sequential"],
        arms=arms,
        ratios=tuple(_ratio_from(stage, body["srm"][stage]) for stage in STAGES),
        metrics=tuple(_metric_from(m, control) for m in body["metrics"]),
        guardrails=tuple(GuardrailResult(g["variant"], _guardrail_from(g)) for g in body["guardrails"]),
        decisions=tuple(TreatmentDecision(d["variant"], _decision_from(d)) for d in body["decisions"]),
        decision=ExperimentDecision(_decision_from(decision), tuple(decision["variants"])),
    )


def label_sets(experiment: Experiment) -> dict[str, list[tuple[str, ...]]]:
    """Every label tuple (after ``model`` and ``experiment``) each family can take, from the definition alone.

    ``effect``: (variant, metric, stat) for each tested metric and treatment, in the order of
    :func:`effect_samples`; ``srm``: (stage,); ``decision``: (decision,).
    """
    return {
        "effect": [
            (v.name, m.name, stat)
            for m in experiment.metrics.tested
            for v in experiment.treatments
            for stat in EFFECT_STATS
        ],
        "srm": [(stage,) for stage in STAGES],
        "decision": [(decision,) for decision in DECISIONS],
    }


def effect_samples(snapshot: ExperimentSnapshot) -> list[tuple[tuple[str, str, str], float]]:
    """``((variant, metric, stat), value)`` for ``mlsidecar_experiment_effect``; NaN where not computed."""
    samples: list[tuple[tuple[str, str, str], float]] = []
    for report in snapshot.metrics:
        for treated in report.effects:
            effect, lift = treated.effect, treated.effect.lift
            values = (
                lift.value, lift.ci_low, lift.ci_high, effect.pvalue, effect.pvalue_adjusted, effect.difference,
                effect.ci_low, effect.ci_high,
            )  # fmt: skip
            samples += [((treated.variant, report.name, stat), v) for stat, v in zip(EFFECT_STATS, values, strict=True)]
    return samples


def srm_samples(snapshot: ExperimentSnapshot) -> list[tuple[str, float]]:
    """``(stage, p-value)`` for ``mlsidecar_experiment_srm_pvalue``; NaN before any unit."""
    return [(ratio.stage, ratio.ratio.pvalue) for ratio in snapshot.ratios]


def decision_samples(snapshot: ExperimentSnapshot) -> list[tuple[str, float]]:
    """``(decision, 1 or 0)`` for ``mlsidecar_experiment_decision``: 1 for the current decision only."""
    current = snapshot.decision.decision.decision
    return [(decision, 1.0 if decision == current else 0.0) for decision in DECISIONS]


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _pair(pair: tuple[int, int] | None) -> dict[str, int] | None:
    return None if pair is None else {"control": pair[0], "treatment": pair[1]}


def _pair_from(pair: dict[str, int] | None) -> tuple[int, int] | None:
    return None if pair is None else (pair["control"], pair["treatment"])


def _decision(decision: Decision) -> dict[str, Any]:
    return {"decision": decision.decision, "reason": decision.reason, "remaining": _pair(decision.remaining)}


def _decision_from(body: dict[str, Any]) -> Decision:
    return Decision(body["decision"], body["reason"], _pair_from(body["remaining"]))


def _arm(arm: ArmSummary) -> dict[str, Any]:
    return {
        "name": arm.name,
        "weight": arm.weight,
        "control": arm.control,
        "routed": {"keyed": arm.routed_keyed, "randomised": arm.routed_randomised},
        "captured_units": arm.captured,
        "requests": arm.serving.requests,
        "error_rate": _number(arm.serving.error_rate),
        "latency_p95_ms": _number(arm.serving.latency_p95_ms),
    }


def _arm_from(body: dict[str, Any]) -> ArmSummary:
    serving = Serving(body["requests"], _float(body["error_rate"]), _float(body["latency_p95_ms"]))
    routed = body["routed"]
    routing = (routed["keyed"], routed["randomised"])
    return ArmSummary(body["name"], body["weight"], body["control"], *routing, body["captured_units"], serving)


def _ratio(ratio: RatioCheck) -> dict[str, Any]:
    test = ratio.ratio
    return {
        "observed": list(ratio.observed),
        "statistic": _number(test.statistic),
        "pvalue": _number(test.pvalue),
        "mismatch": test.mismatch,
    }


def _ratio_from(stage: Any, body: dict[str, Any]) -> RatioCheck:
    test = SampleRatio(_float(body["statistic"]), _float(body["pvalue"]), body["mismatch"])
    return RatioCheck(stage, tuple(body["observed"]), test)


def _metric(report: MetricReport) -> dict[str, Any]:
    return {
        "name": report.name,
        "role": report.role,
        "source": report.source,
        "kind": report.kind,
        "goal": report.goal,
        "mde": report.mde,
        "per_unit": report.per_unit,
        "method": report.method,
        "arms": [
            {"variant": name, **_moments(moments), "exposures": exposures}
            for name, moments, exposures in zip(report.variants, report.arms, report.exposures, strict=True)
        ],
        "effects": [_effect(e) for e in report.effects],
    }


def _moments(moments: Moments) -> dict[str, Any]:
    return {"n": moments.n, "mean": _number(moments.mean), "variance": _number(moments.variance)}


def _moments_from(body: dict[str, Any]) -> Moments:
    return Moments(body["n"], _float(body["mean"]), _float(body["variance"]))


def _effect(treated: TreatmentEffect) -> dict[str, Any]:
    effect, lift, power = treated.effect, treated.effect.lift, treated.power
    return {
        "variant": treated.variant,
        "difference": _number(effect.difference),
        "ci_low": _number(effect.ci_low),
        "ci_high": _number(effect.ci_high),
        "lift": _number(lift.value),
        "lift_standard_error": _number(lift.standard_error),
        "lift_ci_low": _number(lift.ci_low),
        "lift_ci_high": _number(lift.ci_high),
        "pvalue": _number(effect.pvalue),
        "pvalue_adjusted": _number(effect.pvalue_adjusted),
        "sequential": effect.sequential,
        "mde_now": _number(power.mde),
        "required": _pair(power.required),
        "remaining": _pair(power.remaining),
        "novelty": None if treated.novelty is None else _novelty(treated.novelty),
        "simpson": None if treated.simpson is None else _simpson(treated.simpson),
    }


def _novelty(result: Novelty) -> dict[str, Any]:
    return {
        "slope": _number(result.slope),
        "standard_error": _number(result.standard_error),
        "pvalue": _number(result.pvalue),
        "flagged": result.flagged,
    }


def _simpson(result: Simpson) -> dict[str, Any]:
    return {
        "pooled": _number(result.pooled),
        "pvalue": _number(result.pvalue),
        "majority": result.majority,
        "flagged": result.flagged,
        "segments": [{"name": s.name, "effect": _number(s.effect), "units": s.units} for s in result.segments],
    }


def _metric_from(body: dict[str, Any], control: str) -> MetricReport:
    moments = {arm["variant"]: _moments_from(arm) for arm in body["arms"]}
    effects = tuple(_effect_from(e, moments[control], moments[e["variant"]]) for e in body["effects"])
    return MetricReport(
        body["name"],
        body["role"],
        body["source"],
        body["kind"],
        body["goal"],
        body["mde"],
        body["per_unit"],
        body["method"],
        tuple(moments),
        tuple(moments.values()),
        tuple(arm["exposures"] for arm in body["arms"]),
        effects,
    )


def _effect_from(body: dict[str, Any], control: Moments, treatment: Moments) -> TreatmentEffect:
    lift = Lift(
        _float(body["lift"]),
        _float(body["lift_standard_error"]),
        _float(body["lift_ci_low"]),
        _float(body["lift_ci_high"]),
    )
    effect = Effect(
        control,
        treatment,
        _float(body["difference"]),
        _float(body["ci_low"]),
        _float(body["ci_high"]),
        _float(body["pvalue"]),
        lift,
        body["sequential"],
        _float(body["pvalue_adjusted"]),
    )
    power = Power(_float(body["mde_now"]), _pair_from(body["required"]), _pair_from(body["remaining"]))
    novelty = body["novelty"]
    simpson = body["simpson"]
    return TreatmentEffect(
        body["variant"],
        effect,
        power,
        None
        if novelty is None
        else Novelty(
            _float(novelty["slope"]), _float(novelty["standard_error"]), _float(novelty["pvalue"]), novelty["flagged"]
        ),
        None
        if simpson is None
        else Simpson(
            _float(simpson["pooled"]),
            _float(simpson["pvalue"]),
            tuple(Segment(s["name"], _float(s["effect"]), s["units"]) for s in simpson["segments"]),
            simpson["majority"],
            simpson["flagged"],
        ),
    )


def _guardrail(result: GuardrailCheck) -> dict[str, Any]:
    return {
        "name": result.name,
        "control": _number(result.control),
        "treatment": _number(result.treatment),
        "increase": _number(result.increase),
        "max_increase": result.max_increase,
        "breached": result.breached,
    }


def _guardrail_from(body: dict[str, Any]) -> GuardrailCheck:
    return GuardrailCheck(
        body["name"],
        _float(body["control"]),
        _float(body["treatment"]),
        _float(body["increase"]),
        body["max_increase"],
        body["breached"],
    )
