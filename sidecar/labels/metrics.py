"""The labels, performance, store and staleness metrics, read at scrape time.

Performance, coverage and model age come from the latest
:class:`~sidecar.labels.snapshot.LabelsSnapshot`; the label outcomes and the
label-delay histogram from the :class:`~sidecar.labels.ingest.LabelIngest`'s
live counters, as counters should be; the store's from its counters. A scrape
computes nothing.

A metric with too few labels is **absent** from ``mlsidecar_model_performance``,
never a number: ``mlsidecar_model_performance_samples`` says how many labels
there are, so a dashboard can tell "no evidence" from "bad model".
``estimated_accuracy`` is over every captured prediction of the window, the
one to compare with the realised ``accuracy``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.labels.ingest import LabelIngest
from sidecar.labels.snapshot import DELAY_BUCKETS
from sidecar.performance import METRICS
from sidecar.prometheus import PREFIX, counter_by
from sidecar.store import PredictionStore

__all__ = ["LabelMetrics"]

# The "le" label values of mlsidecar_label_delay_seconds, as they have always been exported:
# a changed spelling would start new series and break queries that match on it.
_LE = tuple(f"{bound:g}" for bound in DELAY_BUCKETS) + ("+Inf",)


class LabelMetrics(Collector):
    """Collector over one model's labels side; ``trained_at`` (Unix seconds) gives the model age.

    Usage::

        registry.register(LabelMetrics(evaluator, ingest, store, baseline={"accuracy": 0.91}, trained_at=None))
    """

    def __init__(
        self,
        performance: PerformanceEvaluator,
        ingest: LabelIngest,
        store: PredictionStore,
        *,
        baseline: Mapping[str, float],
        trained_at: float | None,
    ) -> None:
        self.performance = performance
        self.ingest = ingest
        self.store = store
        self.baseline = dict(baseline)
        self.trained_at = trained_at

    def collect(self) -> Iterable[Metric]:
        snapshot = self.performance.snapshot
        model = snapshot.model
        leader = GaugeMetricFamily(
            PREFIX + "store_leader",
            "1 if this replica computes the fleet's performance, coverage and retraining figures (it holds the shared "
            "store's lock, or uses the embedded store), else 0: those families are then absent here.",
            labels=("model",),
        )
        # With the shared store, the fleet's figures come from its leader alone (the snapshot of any
        # other replica holds none), and so does the fleet's row count: one series per model.
        leads = snapshot.leader is not False
        leader.add_metric((model,), 1.0 if leads else 0.0)
        yield leader

        performance = GaugeMetricFamily(
            PREFIX + "model_performance",
            "Model performance from joined labels over the performance window, weighted by 1/p; absent with "
            "too few labels. estimated_accuracy is the mean confidence of every prediction (CBPE-style).",
            labels=("model", "variant", "metric"),
        )
        samples = GaugeMetricFamily(
            PREFIX + "model_performance_samples",
            "Labelled samples behind each performance metric (predictions, for estimated_accuracy).",
            labels=("model", "variant", "metric"),
        )
        for variant_snapshot in snapshot.performance:
            if variant_snapshot.model != model:
                continue
            variant = variant_snapshot.variant
            for metric in variant_snapshot.metrics:
                if metric.name == "estimated_accuracy":
                    continue  # the one over every prediction, below, not just the labelled
                samples.add_metric((model, variant, metric.name), metric.samples)
                if metric.value is not None:
                    performance.add_metric((model, variant, metric.name), metric.value)
        for variant, estimate in snapshot.estimated.items():
            samples.add_metric((model, variant, estimate.name), estimate.samples)
            if estimate.value is not None:
                performance.add_metric((model, variant, estimate.name), estimate.value)
        yield performance
        yield samples

        baseline = GaugeMetricFamily(
            PREFIX + "model_performance_baseline",
            "Baseline performance from the reference profile or SIDECAR_BASELINE_<METRIC>.",
            labels=("model", "metric"),
        )
        for name, value in sorted(self.baseline.items()):
            if name in METRICS[snapshot.task]:
                baseline.add_metric((model, name), value)
        yield baseline

        yield counter_by(
            "labels_total",
            "Label items posted to /api/v1/labels, by outcome: joined, unmatched, duplicate, invalid.",
            model,
            "outcome",
            self.ingest.outcomes,
        )

        delay = HistogramMetricFamily(
            PREFIX + "label_delay_seconds",
            "Seconds from a prediction to the arrival of its label.",
            labels=("model",),
        )
        histogram = self.ingest.delay_histogram()
        delay.add_metric((model,), list(zip(_LE, histogram.cumulative, strict=True)), histogram.sum_seconds)
        yield delay

        coverage = GaugeMetricFamily(
            PREFIX + "label_coverage",
            "Share of the stored predictions of the performance window that have a label.",
            labels=("model",),
        )
        if snapshot.coverage_share is not None:
            coverage.add_metric((model,), snapshot.coverage_share)
        yield coverage

        age = GaugeMetricFamily(
            PREFIX + "model_age_seconds",
            "Seconds since the model was trained (SIDECAR_MODEL_TRAINED_AT, else the profile's created_at).",
            labels=("model",),
        )
        if self.trained_at is not None:
            age.add_metric((model,), max(0.0, snapshot.taken_at - self.trained_at))
        yield age

        yield from self._store(model, fleet=leads)

    def _store(self, model: str, *, fleet: bool) -> Iterable[Metric]:
        counts = self.store.counts()
        rows = GaugeMetricFamily(
            PREFIX + "prediction_store_rows",
            "Predictions held in the prediction store (the shared store's: exported by its leader only).",
            labels=("model",),
        )
        if fleet:
            rows.add_metric((model,), counts.rows)
        yield rows
        yield counter_by(
            "prediction_store_evicted_total",
            "Stored predictions evicted: past SIDECAR_LABEL_TTL_SECONDS (ttl) or SIDECAR_STORE_MAX_ROWS (max_rows).",
            model,
            "reason",
            counts.evicted,
        )
        yield counter_by(
            "prediction_store_dropped_total",
            "Predictions not stored: the write buffer was full (buffer_full) or the sidecar was stopping.",
            model,
            "reason",
            counts.dropped,
        )
        failures = CounterMetricFamily(
            PREFIX + "prediction_store_failures_total",
            "Prediction rows (prediction) and label items (label) that SQLite refused.",
            labels=("model", "kind"),
        )
        failures.add_metric((model, "prediction"), counts.failed)
        failures.add_metric((model, "label"), counts.label_failures)
        yield failures
