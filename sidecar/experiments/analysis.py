"""The analysis of a split experiment: its data in, one immutable :class:`~.snapshot.ExperimentSnapshot` out.

Pure and synchronous (the evaluator runs it in a thread): it reads only the
definition, the :class:`~.data.ExperimentData` and, for sequential tests, the
previous snapshot. In order:

1. **Sample ratios** (:mod:`.srm`), against the weights, on two stages apart:
   *assignment*, the units the router assigned, which are the requests it
   routed by a coin (each is a unit of its own), and, for an experiment
   without a key, all its requests; a keyed experiment's keyed requests are
   not units (a unit sends many, and the treatment may change how many), so
   its distinct units are checked on *capture*: the analysis units in the
   store per arm. A mismatch on either (p < 0.001) makes every decision
   ``invalid``: the first tells a routing bug, the second alone a sampling one.
2. **Per metric** (primary, then secondary) and arm, the moments of its
   analysis units (:mod:`.data` says which reading): a per-unit proportion,
   or a per-exposure proportion whose units each had one exposure, goes
   through the two-proportion z test (:func:`~.compare.compare_proportions`);
   a per-unit mean through Welch's t; a per-exposure ratio through Welch's t
   on the delta method's moments (:func:`~.compare.compare_means`). Each
   treatment is compared with control: the difference and the relative lift,
   with their 1 − α intervals, and the p-value.
3. **Sequential** (``sequential: true``): the intervals are confidence
   sequences and the p-values always valid (:mod:`.sequential`). Across
   evaluations of one window (the same experiment and ``since``), the p-value
   is the running minimum and each interval the running intersection, both
   still valid at α, so a result once significant stays so, and
   ``p ≤ α`` exactly when the interval excludes 0. A restart begins afresh.
   The sequence assumes a sample that only grows: the window should start
   with the experiment and outlive it (``SIDECAR_LABEL_TTL_SECONDS``), since
   predictions evicted from under it make it a sample of something else.
4. **Multiplicity** (:mod:`.correction`): the adjusted p-values over every
   comparison of primary and secondary metrics, one per (metric, treatment),
   so an A/B/n experiment's treatments share the family-wise error rate.
5. **Power** (:mod:`.power`): the MDE at the current n and the units per
   arm still needed for the metric's ``mde`` at ``power``, at the level
   α / m of the m comparisons (Bonferroni's, which bounds Holm's first step)
   unless ``correction: none``, and the weights' ratio of units.
6. **Novelty** (:mod:`.novelty`), for a per-exposure metric: the effect in
   each period since the units' first exposure (calendar periods without a
   key), signed so that better is positive; a significant downward trend is
   flagged. **Simpson** (:mod:`.simpson`), with ``segment_by``: the effect in
   each segment beside the pooled one.
7. **Guardrails** (:mod:`.guardrails`) per treatment, from the proxy's counters.
8. **Decisions**: one per treatment against control (:func:`~.decision.decide`),
   then the experiment's, in the first rule that applies:

   ==================  =============================================================
   ``invalid``         a sample ratio mismatch (every treatment is then invalid)
   ``revert``          any treatment reverts: those are named
   ``roll_out``        any treatment rolls out: the best of them is named, the one
                       whose first primary metric moved furthest its goal's way
   ``no_difference``   every treatment shows no difference
   ``keep_running``    otherwise, with the most units per arm a treatment still needs
   ==================  =============================================================

Shadow experiments are not analysed here: their arms see the same requests,
which are paired, not counted by arm.

Usage::

    snapshot = analyse(experiment, data, now=time.time(), previous=last)
    snapshot.decision.decision.decision        # "keep_running"
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from sidecar.experiments.compare import Effect, adjusted, compare_means, compare_proportions
from sidecar.experiments.data import SUMS, ExperimentData, MetricData, Serving
from sidecar.experiments.decision import Decision, Primary, decide
from sidecar.experiments.definition import Experiment, Goal, GuardrailName, Metric
from sidecar.experiments.guardrails import check
from sidecar.experiments.lift import Lift
from sidecar.experiments.moments import Moments, Proportion
from sidecar.experiments.novelty import Novelty, novelty
from sidecar.experiments.power import Power, power_for_means, power_for_proportions
from sidecar.experiments.simpson import Simpson, simpson
from sidecar.experiments.snapshot import (
    ArmSummary,
    ExperimentDecision,
    ExperimentSnapshot,
    GuardrailResult,
    Method,
    MetricReport,
    RatioCheck,
    Role,
    TreatmentDecision,
    TreatmentEffect,
)
from sidecar.experiments.srm import srm

__all__ = ["analyse"]

Floats = npt.NDArray[np.float64]

_GUARDRAIL_VALUES: Mapping[GuardrailName, Callable[[Serving], float]] = {
    "error_rate": lambda serving: serving.error_rate,
    "latency_p95_ms": lambda serving: serving.latency_p95_ms,
}


def analyse(
    experiment: Experiment, data: ExperimentData, *, now: float, previous: ExperimentSnapshot | None = None
) -> ExperimentSnapshot:
    """One analysis of ``experiment`` over ``data``; see the module docstring."""
    if experiment.mode != "split":
        raise ValueError(f"experiment {experiment.name!r} is a shadow experiment: its arms are paired, not split")
    variants = experiment.variants
    if len(data.captured) != len(variants):
        raise ValueError(f"the data has {len(data.captured)} arms; experiment {experiment.name!r} {len(variants)}")
    control = next(i for i, v in enumerate(variants) if v.is_control)
    treatments = [i for i in range(len(variants)) if i != control]
    weights = [v.weight or 0.0 for v in variants]
    routing = data.routing
    ratios = _ratios(experiment, data, weights)
    reports = _reports(experiment, data, previous, control, treatments, weights)
    guardrails = _guardrails(experiment, data, control, treatments)
    decisions = tuple(
        TreatmentDecision(
            variants[t].name,
            decide(
                ratios=[r.ratio for r in ratios],
                primary=[
                    Primary(r.name, e.effect, r.goal, r.mde, e.power)
                    for r in reports
                    if r.role == "primary"
                    for e in [r.effect(variants[t].name)]
                ],
                guardrails=[g.check for g in guardrails if g.variant == variants[t].name],
                alpha=experiment.alpha,
            ),
        )
        for t in treatments
    )
    primary = next(r for r in reports if r.role == "primary") if reports else None
    arms = tuple(
        ArmSummary(
            v.name, weights[i], v.is_control, routing.keyed[i], routing.randomised[i], data.captured[i], data.serving[i]
        )
        for i, v in enumerate(variants)
    )
    key = experiment.assignment.key
    return ExperimentSnapshot(
        experiment=experiment.name,
        computed_at=now,
        since=data.since,
        key=None if key is None else f"{key[0]}:{key[1]}",
        alpha=experiment.alpha,
        correction=experiment.correction,
        power=experiment.power,
        sequential=experiment.sequential,
        arms=arms,
        ratios=ratios,
        metrics=reports,
        guardrails=guardrails,
        decisions=decisions,
        decision=_overall(decisions, primary),
    )


def _ratios(experiment: Experiment, data: ExperimentData, weights: Sequence[float]) -> tuple[RatioCheck, ...]:
    """The sample-ratio checks on assignment and on capture; see the module docstring for what each counts."""
    routing = data.routing
    if experiment.assignment.key is not None:
        assigned = routing.randomised
    else:
        assigned = tuple(a + b for a, b in zip(routing.keyed, routing.randomised, strict=True))
    return (
        RatioCheck("assignment", assigned, srm(assigned, weights)),
        RatioCheck("capture", data.captured, srm(data.captured, weights)),
    )


def _reports(
    experiment: Experiment,
    data: ExperimentData,
    previous: ExperimentSnapshot | None,
    control: int,
    treatments: Sequence[int],
    weights: Sequence[float],
) -> tuple[MetricReport, ...]:
    """Every tested metric's moments, effects (corrected as one family), power, novelty and Simpson checks."""
    variants = experiment.variants
    tested: list[tuple[Metric, Role]] = [(m, "primary") for m in experiment.metrics.primary]
    tested += [(m, "secondary") for m in experiment.metrics.secondary]
    running = _running_effects(previous, experiment, data.since)
    empty = MetricData(np.zeros((len(variants), len(SUMS))))
    prepared = []
    for metric, role in tested:
        metric_data = data.metrics.get(metric.name, empty)
        method = _method(metric, metric_data)
        effects = [
            _running(
                _compare(method, metric_data.total[control], metric_data.total[t], experiment),
                running.get((metric.name, variants[t].name)),
            )
            for t in treatments
        ]
        prepared.append((metric, role, metric_data, method, effects))
    corrected = iter(adjusted([e for *_, effects in prepared for e in effects], experiment.correction))
    comparisons = len(tested) * len(treatments)
    power_alpha = experiment.alpha if experiment.correction == "none" else experiment.alpha / max(1, comparisons)

    reports: list[MetricReport] = []
    for metric, role, metric_data, method, _ in prepared:
        treated = tuple(
            TreatmentEffect(
                variants[t].name,
                next(corrected),  # in the order the effects went in: by metric, then by treatment
                _power(method, metric_data, control, t, metric, power_alpha, experiment.power, weights),
                None if metric_data.per_unit else _novelty(method, metric_data, control, t, metric.goal, experiment),
                None if experiment.segment_by is None else _simpson(method, metric_data, control, t, experiment),
            )
            for t in treatments
        )
        reports.append(
            MetricReport(
                metric.name,
                role,
                metric.source,
                metric.kind,
                metric.goal,
                metric.mde,
                metric_data.per_unit,
                method,
                tuple(v.name for v in variants),
                tuple(_moments(method, row) for row in metric_data.total),
                tuple(float(x) for x in metric_data.total[:, 2]),
                treated,
            )
        )
    return tuple(reports)


def _guardrails(
    experiment: Experiment, data: ExperimentData, control: int, treatments: Sequence[int]
) -> tuple[GuardrailResult, ...]:
    return tuple(
        GuardrailResult(
            experiment.variants[t].name,
            check(
                g.name,
                control=_GUARDRAIL_VALUES[g.name](data.serving[control]),
                treatment=_GUARDRAIL_VALUES[g.name](data.serving[t]),
                max_increase=g.max_increase,
                requests=(data.serving[control].requests, data.serving[t].requests),
            ),
        )
        for t in treatments
        for g in experiment.metrics.guardrails
    )


def _method(metric: Metric, data: MetricData) -> Method:
    """How the arms of ``metric`` are compared; see the module docstring."""
    total = data.total
    # Every unit had one exposure exactly when Σx = Σx² = n: the per-exposure ratio is then a plain mean.
    single = bool(np.all(total[:, 2] == total[:, 0]) and np.all(total[:, 4] == total[:, 0]))
    if metric.kind == "proportion" and (data.per_unit or single):
        return "proportion"
    return "mean" if data.per_unit or single else "ratio"


def _moments(method: Method, sums: Floats) -> Moments:
    n, y, x, yy, xx, xy = (float(v) for v in sums)
    if method == "proportion":
        return Proportion(int(n), y).moments()
    if method == "mean":
        return Moments.of_sums(int(n), y, yy)
    return Moments.of_ratio_sums(int(n), y, x, yy, xx, xy)


def _compare(method: Method, control: Floats, treatment: Floats, experiment: Experiment) -> Effect:
    alpha, sequential = experiment.alpha, experiment.sequential
    if method == "proportion":
        c, t = Proportion(int(control[0]), float(control[1])), Proportion(int(treatment[0]), float(treatment[1]))
        return compare_proportions(c, t, alpha=alpha, sequential=sequential)
    return compare_means(_moments(method, control), _moments(method, treatment), alpha=alpha, sequential=sequential)


def _power(
    method: Method,
    data: MetricData,
    control: int,
    treatment: int,
    metric: Metric,
    alpha: float,
    power: float,
    weights: Sequence[float],
) -> Power:
    """The MDE now and the units still needed, with the arms' units in the ratio of their weights."""
    ratio = weights[treatment] / weights[control]
    c_row, t_row = data.total[control], data.total[treatment]
    if method == "proportion":
        c, t = Proportion(int(c_row[0]), float(c_row[1])), Proportion(int(t_row[0]), float(t_row[1]))
        return power_for_proportions(c, t, mde=metric.mde, alpha=alpha, power=power, ratio=ratio)
    c_moments, t_moments = _moments(method, c_row), _moments(method, t_row)
    return power_for_means(c_moments, t_moments, mde=metric.mde, alpha=alpha, power=power, ratio=ratio)


def _novelty(
    method: Method, data: MetricData, control: int, treatment: int, goal: Goal, experiment: Experiment
) -> Novelty:
    """The trend of the period effects, signed so that better is positive; periods with fewer than two units
    in an arm are left out."""
    periods = data.periods
    sign = 1.0 if goal == "increase" else -1.0
    effects: list[float] = []
    errors: list[float] = []
    ks: list[float] = []
    for k in range(periods.shape[0]):
        c, t = _moments(method, periods[k, control]), _moments(method, periods[k, treatment])
        if c.n < 2 or t.n < 2:
            continue
        effects.append(sign * (t.mean - c.mean))
        errors.append(math.sqrt(t.variance / t.n + c.variance / c.n))
        ks.append(float(k))
    return novelty(effects, errors, alpha=experiment.alpha, periods=ks)


def _simpson(method: Method, data: MetricData, control: int, treatment: int, experiment: Experiment) -> Simpson:
    parts = {name: (_moments(method, s[control]), _moments(method, s[treatment])) for name, s in data.segments.items()}
    return simpson(parts, alpha=experiment.alpha)


def _running_effects(
    previous: ExperimentSnapshot | None, experiment: Experiment, since: float
) -> dict[tuple[str, str], Effect]:
    """The previous evaluation's effects by (metric, treatment), when its sequential results carry over."""
    if previous is None or not experiment.sequential or not previous.sequential:
        return {}
    if previous.experiment != experiment.name or previous.since != since:
        return {}
    return {(m.name, e.variant): e.effect for m in previous.metrics for e in m.effects}


def _running(effect: Effect, before: Effect | None) -> Effect:
    """The running minimum p-value and the running intersection of the intervals, of a sequential effect."""
    if before is None or not effect.sequential:
        return effect
    lift = effect.lift
    return dataclasses.replace(
        effect,
        pvalue=_least(effect.pvalue, before.pvalue),
        ci_low=_greatest(effect.ci_low, before.ci_low),
        ci_high=_least(effect.ci_high, before.ci_high),
        lift=Lift(
            lift.value,
            lift.standard_error,
            _greatest(lift.ci_low, before.lift.ci_low),
            _least(lift.ci_high, before.lift.ci_high),
        ),
    )


def _least(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)


def _greatest(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


def _overall(decisions: Sequence[TreatmentDecision], primary: MetricReport | None) -> ExperimentDecision:
    """The experiment's decision from its treatments'; see the module docstring."""
    if len(decisions) == 1:
        [only] = decisions
        named = (only.variant,) if only.decision.decision in ("revert", "roll_out") else ()
        return ExperimentDecision(only.decision, named)
    by_kind: dict[str, list[TreatmentDecision]] = {}
    for d in decisions:
        by_kind.setdefault(d.decision.decision, []).append(d)
    if "invalid" in by_kind:
        return ExperimentDecision(by_kind["invalid"][0].decision)
    if "revert" in by_kind:
        reverting = by_kind["revert"]
        reason = "; ".join(f"{d.variant}: {d.decision.reason}" for d in reverting)
        return ExperimentDecision(Decision("revert", reason), tuple(d.variant for d in reverting))
    if "roll_out" in by_kind:
        winners = by_kind["roll_out"]
        sign = 1.0 if primary is None or primary.goal == "increase" else -1.0

        def moved(d: TreatmentDecision) -> float:
            difference = math.nan if primary is None else primary.effect(d.variant).effect.difference
            return -math.inf if math.isnan(difference) else sign * difference

        best = max(winners, key=moved)
        others = f" (of {', '.join(d.variant for d in winners)})" if len(winners) > 1 else ""
        return ExperimentDecision(
            Decision("roll_out", f"{best.variant}{others}: {best.decision.reason}"), (best.variant,)
        )
    if set(by_kind) == {"no_difference"}:
        return ExperimentDecision(Decision("no_difference", "no treatment differs from control by its mde"))
    waiting = [d.decision.remaining for d in by_kind.get("keep_running", []) if d.decision.remaining is not None]
    remaining = max(waiting, key=sum) if waiting else None
    return ExperimentDecision(Decision("keep_running", "no treatment is conclusive yet", remaining))
