"""The experiment's analysis metrics, read at scrape time from the runner's latest snapshot.

A collector, as the drift and performance ones are: the
:class:`~.runner.ExperimentRunner` owns the snapshot and this reads it, so a
scrape computes nothing and never disagrees with ``GET /api/v1/experiments``.
It serves the monitoring side; the serving process's counters of the same
experiment (assignments per arm, shadow mirrors) are :mod:`.traffic`'s.

===================================================  =====================================================
``mlsidecar_experiment_effect``                      ``{model, experiment, variant, metric, stat}``: each
                                                     treatment against control on each tested metric, the
                                                     stats of :data:`~.view.EFFECT_STATS`; absent where
                                                     not computed (too few units, no variance)
``mlsidecar_experiment_srm_pvalue``                  ``{model, experiment, stage}``: the sample-ratio
                                                     test's p-value on ``assignment`` and ``capture``;
                                                     absent before any unit
``mlsidecar_experiment_decision``                    ``{model, experiment, decision}``: 1 for the current
                                                     decision, 0 for the four others
``mlsidecar_experiment_evaluation_failures_total``   ``{model, experiment, reason}``: evaluations that
                                                     kept the last snapshot: ``store`` (it failed or could
                                                     not be reached), ``error`` (the analysis raised)
``mlsidecar_experiment_outcomes_total``              ``{model, experiment, outcome}``: outcome items posted
                                                     to ``/api/v1/outcomes``, by what became of them
===================================================  =====================================================

Before the first evaluation the three analysis families have no samples.
Label values come from the definition (the experiment, its variants and
metrics) and from fixed lists (the stats, stages, decisions, reasons and
outcomes), never from payloads.

A shadow experiment's comparison has its own collector, :class:`ShadowMetrics`,
over the :class:`~.shadow_runner.ShadowRunner`'s snapshot and the live
counts of its :class:`~.pairing.ShadowPairing` and of the store:

==================================================  =====================================================
``mlsidecar_shadow_agreement_ratio``                ``{model, experiment}``: the share of paired rows
                                                    predicting one class (a classifier; absent otherwise)
``mlsidecar_shadow_pairing_ratio``                  ``{model, experiment}``: control's stored predictions
                                                    that have the challenger's beside them
``mlsidecar_shadow_prediction_psi``                 ``{model, experiment}``: the PSI of the challenger's
                                                    predictions against control's; absent below the
                                                    minimum of samples
``mlsidecar_shadow_score_difference``               ``{model, experiment, stat}``: challenger − control per
                                                    pair (confidences, or predictions), the stats of
                                                    :data:`~.shadow_view.DIFFERENCE_STATS`
``mlsidecar_shadow_error_ratio``                    ``{model, experiment, variant}``: each model's share of
                                                    5xx (control's requests, the challenger's answers)
``mlsidecar_shadow_latency_p95_seconds``            ``{model, experiment, variant}``: each model's p95
                                                    latency, from the proxy's buckets
``mlsidecar_shadow_effect``                         ``{model, experiment, metric, stat}``: each label metric
                                                    of both on the same requests, the stats of
                                                    :data:`~.shadow_view.EFFECT_STATS`
``mlsidecar_shadow_answers_total``                  ``{model, experiment, fate}``: the challenger's answers
                                                    that reached the comparison, by fate
``mlsidecar_shadow_store_dropped_total``            ``{model, experiment, reason}``: the challenger's rows
                                                    not stored: buffer_full, shutdown, failed
``mlsidecar_experiment_evaluation_failures_total``  as above, for the comparison's evaluations
==================================================  =====================================================

The snapshot's families have no samples before the first evaluation, and a
figure that could not be computed has none.

Usage::

    registry.register(ExperimentMetrics(runner, model="iris"))          # split mode
    registry.register(ShadowMetrics(shadow_runner, model="iris"))       # shadow mode
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.experiments.pairing import FATES
from sidecar.experiments.periodic import Failure
from sidecar.experiments.runner import ExperimentRunner
from sidecar.experiments.shadow_runner import ShadowRunner
from sidecar.prometheus import PREFIX
from sidecar.store.values import SHADOW_UNSTORED

__all__ = ["ExperimentMetrics", "ShadowMetrics"]


class ExperimentMetrics(Collector):
    """The ``mlsidecar_experiment_*`` families of the analysis; see the module docstring.

    Usage::

        registry.register(ExperimentMetrics(runner, model="iris"))
    """

    def __init__(self, runner: ExperimentRunner, *, model: str) -> None:
        self.runner = runner
        self.model = model

    def collect(self) -> Iterable[Metric]:
        # Imported here, not at the top: the view loads the statistics (scipy), which only the monitoring
        # process, where a snapshot exists, has to.
        from sidecar.experiments.view import decision_samples, effect_samples, srm_samples

        runner, model = self.runner, self.model
        name = runner.experiment.name
        snapshot = runner.snapshot
        effect = GaugeMetricFamily(
            PREFIX + "experiment_effect",
            "Each treatment against control on each tested metric: the relative lift and its interval (lift, ci_low, "
            "ci_high), the p-values (pvalue, pvalue_adjusted) and the absolute difference and its interval "
            "(difference, difference_ci_low, difference_ci_high); absent where not computed.",
            labels=("model", "experiment", "variant", "metric", "stat"),
        )
        srm = GaugeMetricFamily(
            PREFIX + "experiment_srm_pvalue",
            "The sample-ratio test's p-value against the weights, on assignment (the router's) and on capture "
            "(the stored units); below 0.001 the experiment is invalid.",
            labels=("model", "experiment", "stage"),
        )
        decision = GaugeMetricFamily(
            PREFIX + "experiment_decision",
            "1 for the experiment's current decision (invalid, revert, roll_out, no_difference, keep_running), "
            "0 for the others; absent before the first evaluation.",
            labels=("model", "experiment", "decision"),
        )
        if snapshot is not None:
            for (variant, metric, stat), value in effect_samples(snapshot):
                if math.isfinite(value):
                    effect.add_metric((model, name, variant, metric, stat), value)
            for stage, value in srm_samples(snapshot):
                if math.isfinite(value):
                    srm.add_metric((model, name, stage), value)
            for choice, value in decision_samples(snapshot):
                decision.add_metric((model, name, choice), value)
        yield effect
        yield srm
        yield decision
        yield _failures(model, name, runner.failures)

        outcomes = CounterMetricFamily(
            PREFIX + "experiment_outcomes_total",
            "Outcome items posted to /api/v1/outcomes, by outcome: joined, unmatched, duplicate, invalid.",
            labels=("model", "experiment", "outcome"),
        )
        for outcome, n in runner.store.counts().outcomes.items():
            outcomes.add_metric((model, name, outcome), n)
        yield outcomes


class ShadowMetrics(Collector):
    """The ``mlsidecar_shadow_*`` families of a shadow experiment's comparison; see the module docstring.

    Usage::

        registry.register(ShadowMetrics(shadow_runner, model="iris"))
    """

    def __init__(self, runner: ShadowRunner, *, model: str) -> None:
        self.runner = runner
        self.model = model

    def collect(self) -> Iterable[Metric]:
        # Imported here, not at the top: the view loads the snapshot's statistics (scipy), which only the
        # monitoring process, where a snapshot exists, has to.
        from sidecar.experiments.shadow_view import difference_samples, effect_samples

        runner, model = self.runner, self.model
        name = runner.experiment.name
        snapshot = runner.snapshot
        agreement = _gauge("shadow_agreement_ratio", "The share of paired rows whose two predictions are one class.")
        pairing = _gauge(
            "shadow_pairing_ratio", "Control's stored predictions of the window that have the challenger's beside them."
        )
        psi = _gauge(
            "shadow_prediction_psi",
            "PSI of the challenger's predictions against control's, over bins fixed by control's; absent below the "
            "minimum of samples.",
        )
        difference = _gauge(
            "shadow_score_difference",
            "The challenger's number minus control's per paired row (a classifier's confidences, else the "
            "predictions): mean, mean_absolute, p05, p50, p95.",
            "stat",
        )
        errors = _gauge(
            "shadow_error_ratio",
            "Each model's share of 5xx: control's requests (the proxy's counters), the challenger's answers.",
            "variant",
        )
        latency = _gauge(
            "shadow_latency_p95_seconds",
            "Each model's 95th percentile of latency, estimated in the proxy's buckets.",
            "variant",
        )
        effect = _gauge(
            "shadow_effect",
            "Each label metric of both models on the same labelled requests: control, challenger, difference "
            "(challenger - control), pvalue (McNemar or paired t), pvalue_adjusted.",
            "metric",
            "stat",
        )
        if snapshot is not None:
            single = (model, name)
            _add(agreement, single, math.nan if snapshot.agreement is None else snapshot.agreement.rate)
            _add(pairing, single, snapshot.pairing.rate)
            _add(psi, single, snapshot.shift.psi)
            for stat, value in difference_samples(snapshot):
                _add(difference, (model, name, stat), value)
            for arm in snapshot.arms:
                _add(errors, (model, name, arm.name), arm.serving.error_rate)
                _add(latency, (model, name, arm.name), arm.serving.latency_p95_ms / 1000.0)
            for (metric, stat), value in effect_samples(snapshot):
                _add(effect, (model, name, metric, stat), value)
        yield from (agreement, pairing, psi, difference, errors, latency, effect)

        answers = CounterMetricFamily(
            PREFIX + "shadow_answers_total",
            "The challenger's answers that reached the comparison, by fate: stored (read, to pair with control's), "
            "failed (no 2xx answer), not_captured (control's request was not captured), unreadable.",
            labels=("model", "experiment", "fate"),
        )
        for fate in FATES:
            answers.add_metric((model, name, fate), runner.pairing.fates[fate])
        yield answers
        unstored = CounterMetricFamily(
            PREFIX + "shadow_store_dropped_total",
            "The challenger's rows not stored: the store's buffer was full (buffer_full), the sidecar was "
            "stopping (shutdown), or the database refused them (failed).",
            labels=("model", "experiment", "reason"),
        )
        counts = runner.store.counts().shadow_unstored
        for reason in SHADOW_UNSTORED:
            unstored.add_metric((model, name, reason), counts[reason])
        yield unstored
        yield _failures(model, name, runner.failures)


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=("model", "experiment", *labels))


def _add(family: GaugeMetricFamily, labels: tuple[str, ...], value: float) -> None:
    """A sample only for a figure that was computed."""
    if math.isfinite(value):
        family.add_metric(labels, value)


def _failures(model: str, experiment: str, failures: Mapping[Failure, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        PREFIX + "experiment_evaluation_failures_total",
        "Experiment evaluations that kept the last analysis: the prediction store failed or could not be "
        "reached (store), or the analysis raised (error).",
        labels=("model", "experiment", "reason"),
    )
    for reason, n in failures.items():
        family.add_metric((model, experiment, reason), n)
    return family
