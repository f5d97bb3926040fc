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

Usage::

    registry.register(ExperimentMetrics(runner, model="iris"))
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.experiments.runner import ExperimentRunner
from sidecar.prometheus import PREFIX

__all__ = ["ExperimentMetrics"]


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

        failures = CounterMetricFamily(
            PREFIX + "experiment_evaluation_failures_total",
            "Experiment evaluations that kept the last analysis: the prediction store failed or could not be "
            "reached (store), or the analysis raised (error).",
            labels=("model", "experiment", "reason"),
        )
        for reason, n in runner.failures.items():
            failures.add_metric((model, name, reason), n)
        yield failures

        outcomes = CounterMetricFamily(
            PREFIX + "experiment_outcomes_total",
            "Outcome items posted to /api/v1/outcomes, by outcome: joined, unmatched, duplicate, invalid.",
            labels=("model", "experiment", "outcome"),
        )
        for outcome, n in runner.store.counts().outcomes.items():
            outcomes.add_metric((model, name, outcome), n)
        yield outcomes
