"""A shadow experiment's comparison: control's and the challenger's answers to the same requests, side by side.

:func:`analyse_shadow` turns the store's pairs (:class:`~sidecar.store.ShadowPairs`),
each model's serving signals and the challenger's answer counts into one
:class:`~.shadow_snapshot.ShadowSnapshot`. It runs off the event loop (the
:class:`~.shadow_runner.ShadowRunner` calls it in a thread). What it reports:

- **pairing**: the share of control's stored predictions with the
  challenger's beside them (only captured requests can pair, so with
  sampling this is at most about the capture rate's share of the mirrors);
- **agreement** (a classifier): the share of pairs predicting one class,
  with Wilson's interval (:mod:`.agreement`);
- **differences**: challenger − control per pair, of the confidences (a
  classifier) or of the predictions (regression, scores) (:mod:`.differences`);
- **shift**: the PSI of the challenger's predictions against control's, over
  bins fixed by control's (:mod:`.shift`), with ``min_samples``
  (``SIDECAR_DRIFT_MIN_SAMPLES``) a side;
- **each model's serving**: requests, error rate and p95 latency, and the
  definition's guardrails on them (:mod:`.guardrails`);
- **each label metric** of the definition (primary and secondary) on the
  same labelled requests, by its per-request values
  (:func:`~.labelled.label_values`): a proportion by McNemar's test
  (:mod:`.mcnemar`) on the requests both models were scored on, a mean (a
  loss) by the paired t (:mod:`.paired`) on the per-request differences;
  precision has no paired test, since each model's predicted positives are
  other requests. The p-values are adjusted by the definition's correction
  over these metrics (:mod:`.correction`), and a metric with fewer labelled
  pairs than ``SIDECAR_PERF_MIN_LABELS`` is ``insufficient_labels``.

Pairs are counted as captured, not weighted by 1/p: both models are judged
on the very same rows, so a sampling strategy that keeps some requests more
often weighs them more for both alike. With the default uniform sampling the
figures are the traffic's.

Usage::

    snapshot = analyse_shadow(experiment, pairs, control=control_serving, challenger=pairing.serving(),
                              answers=pairing.fates, config=config, now=time.time(), since=start, min_samples=200)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from sidecar.experiments.agreement import agreement
from sidecar.experiments.correction import adjust
from sidecar.experiments.data import Serving
from sidecar.experiments.definition import Experiment, Metric
from sidecar.experiments.differences import differences
from sidecar.experiments.guardrails import GuardrailCheck, check
from sidecar.experiments.labelled import label_values
from sidecar.experiments.mcnemar import mcnemar
from sidecar.experiments.moments import Moments
from sidecar.experiments.paired import paired_t
from sidecar.experiments.pairing import Fate
from sidecar.experiments.shadow_snapshot import (
    PairedMethod,
    PairedMetric,
    Pairing,
    ShadowArm,
    ShadowSnapshot,
    Verdict,
)
from sidecar.experiments.shift import DEFAULT_BINS, numbers, prediction_shift
from sidecar.experiments.snapshot import Role
from sidecar.performance import PerformanceConfig
from sidecar.store import ShadowPairs

__all__ = ["analyse_shadow"]

Floats = npt.NDArray[np.float64]


def analyse_shadow(
    experiment: Experiment,
    pairs: ShadowPairs,
    *,
    control: Serving,
    challenger: Serving,
    answers: Mapping[Fate, int],
    config: PerformanceConfig,
    now: float,
    since: float,
    min_samples: int,
    bins: int = DEFAULT_BINS,
) -> ShadowSnapshot:
    """Compare the two models; see the module docstring."""
    if experiment.mode != "shadow":
        raise ValueError(f"experiment {experiment.name!r} splits its traffic: it has no pairs to compare")
    classifier = config.task == "classification"
    labelled = int(pairs.labelled.sum())
    paired = len(pairs)
    pairing = Pairing(
        pairs.control_rows,
        paired,
        labelled,
        paired / pairs.control_rows if pairs.control_rows else math.nan,
        dict(answers),
    )
    names = (experiment.control.name, experiment.treatments[0].name)
    arms = (ShadowArm(names[0], True, control), ShadowArm(names[1], False, challenger))
    if classifier:
        compared = differences(pairs.control_confidence, pairs.challenger_confidence)
    else:
        compared = differences(numbers(pairs.control), numbers(pairs.challenger))
    return ShadowSnapshot(
        experiment=experiment.name,
        computed_at=now,
        since=since,
        control=names[0],
        challenger=names[1],
        alpha=experiment.alpha,
        correction=experiment.correction,
        pairing=pairing,
        arms=arms,
        agreement=agreement(pairs.control, pairs.challenger, alpha=experiment.alpha) if classifier else None,
        compared="confidence" if classifier else "prediction",
        differences=compared,
        shift=prediction_shift(
            pairs.control, pairs.challenger, numeric=not classifier, min_samples=min_samples, bins=bins
        ),
        metrics=_metrics(experiment, pairs, config),
        guardrails=_guardrails(experiment, control, challenger),
    )


def _metrics(experiment: Experiment, pairs: ShadowPairs, config: PerformanceConfig) -> tuple[PairedMetric, ...]:
    rows = np.flatnonzero(pairs.labelled)
    label = [pairs.label[i] for i in rows]
    control = ([pairs.control[i] for i in rows], [pairs.control_scores[i] for i in rows])
    challenger = ([pairs.challenger[i] for i in rows], [pairs.challenger_scores[i] for i in rows])
    tested: list[tuple[Metric, Role]] = [
        *((metric, "primary") for metric in experiment.metrics.primary),
        *((metric, "secondary") for metric in experiment.metrics.secondary),
    ]
    tests = [
        _test(
            metric,
            role,
            label_values(metric.name, *control, label, config),
            label_values(metric.name, *challenger, label, config),
            min_labels=config.min_labels,
            alpha=experiment.alpha,
        )
        for metric, role in tested
    ]
    adjusted = adjust([test.pvalue for test, _ in tests], experiment.correction)
    return tuple(
        replace(test, pvalue_adjusted=p, verdict=_verdict(test, p, experiment.alpha)) if testable else test
        for (test, testable), p in zip(tests, adjusted, strict=True)
    )


def _test(
    metric: Metric, role: Role, ours: Floats, theirs: Floats, *, min_labels: int, alpha: float
) -> tuple[PairedMetric, bool]:
    """The metric's paired comparison before the correction, and whether it was tested (its verdict is then
    decided after the correction)."""
    both = ~(np.isnan(ours) | np.isnan(theirs))
    a, b = ours[both], theirs[both]
    n = int(a.size)
    control = float(a.mean()) if n else math.nan
    challenger = float(b.mean()) if n else math.nan
    nan = math.nan
    untested = PairedMetric(
        metric.name, role, metric.kind, metric.goal, None, n, control, challenger, challenger - control,
        nan, nan, nan, nan, nan, None, "not_paired",
    )  # fmt: skip
    if metric.name == "precision":
        # Over each model's own predicted positives: not the same requests, so not a paired comparison.
        return untested, False
    method: PairedMethod = "mcnemar" if metric.kind == "proportion" else "paired_t"
    if n < min_labels:
        return replace(untested, method=method, verdict="insufficient_labels"), False
    if method == "mcnemar":
        test = mcnemar(int(np.sum((a == 1.0) & (b == 0.0))), int(np.sum((a == 0.0) & (b == 1.0))))
        return replace(untested, method=method, statistic=test.statistic, pvalue=test.pvalue, mcnemar=test), True
    result = paired_t(Moments.of_values(b - a), alpha=alpha)
    return replace(
        untested,
        method=method,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        statistic=result.statistic,
        pvalue=result.pvalue,
    ), True


def _verdict(test: PairedMetric, adjusted: float, alpha: float) -> Verdict:
    """Significant after the correction, and which way by the metric's goal; NaN (no variation) is not."""
    if not adjusted < alpha:
        return "not_significant"
    better = test.difference > 0 if test.goal == "increase" else test.difference < 0
    return "challenger_better" if better else "challenger_worse"


def _guardrails(experiment: Experiment, control: Serving, challenger: Serving) -> tuple[GuardrailCheck, ...]:
    values = {
        "error_rate": (control.error_rate, challenger.error_rate),
        "latency_p95_ms": (control.latency_p95_ms, challenger.latency_p95_ms),
    }
    # As the split analysis judges them: once both have their minimum of requests (the challenger's: its answers).
    requests = (control.requests, challenger.requests)
    return tuple(
        check(
            g.name,
            control=values[g.name][0],
            treatment=values[g.name][1],
            max_increase=g.max_increase,
            requests=requests,
        )
        for g in experiment.metrics.guardrails
    )
