"""The alert signals of one sidecar, read from its monitors' latest snapshots.

:class:`SignalSource` turns what the proxy counters, the data monitors and the
performance evaluator already hold into one :class:`~sidecar.alerting.Signals` per
evaluation; it computes no statistics of its own beyond differences of
counters. Where each signal comes from:

=======================  =================================================================
signal                   source
=======================  =================================================================
``error_rate``           5xx responses (the proxy's own 502/504 included) over all requests,
                         in the last ``rate_window_seconds``; None below ``min_requests``
``p99_latency_seconds``  the request-duration histogram over the same window, interpolated
                         within the bucket as Prometheus' ``histogram_quantile`` does
``volume``               captured records per second in the last closed quality slice
``missing_periods``      slices in a row without traffic, up to now
``freshness_seconds``    seconds since the newest captured record
``quality_violations``   violations per captured record in the last closed quality slice
``psi`` ...              per feature, from the drift snapshot; None with insufficient data
``prediction_psi``       PSI of the ``prediction`` output
``drifted_feature_share``  the dataset-level drift share
``accuracy`` ...         the primary variant's realised metrics; None with too few labels
``label_coverage``       labelled share of the stored predictions of the performance window
``accuracy_drop``        ``(baseline − accuracy) / baseline``, with the accuracy baseline
``experiment_decision``  the A/B experiment's current decision, from the callable given (the
                         experiment runner's); None without an experiment or before its first
                         analysis
=======================  =================================================================
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from sidecar.alerting import Signals, rank_drift
from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.monitoring.evaluator import DataMonitors
from sidecar.records import PredictionRecord
from sidecar.serving.metrics import LATENCY_BUCKETS, ServingCounts

__all__ = ["PERFORMANCE_SIGNALS", "SignalSource", "histogram_quantile"]

# The alert signals that are realised performance metrics, by the same names.
PERFORMANCE_SIGNALS = ("accuracy", "precision", "recall", "f1", "auc_roc", "mae", "rmse", "mape", "ndcg")


class SignalSource:
    """Builds :class:`Signals` from the sidecar's live state, one call per evaluation.

    Usage::

        source = SignalSource(metrics, monitors, performance, baseline={"accuracy": 0.91},
                              rate_window_seconds=300, min_requests=20, variant="primary",
                              experiment_decision=runner.decision)   # or None without an experiment
        monitor.subscribe(source.observe)       # the model version of the newest record
        engine.evaluate(source.build(now), now)
    """

    def __init__(
        self,
        metrics: ServingCounts,
        monitors: DataMonitors,
        performance: PerformanceEvaluator,
        *,
        baseline: Mapping[str, float],
        rate_window_seconds: float,
        min_requests: int,
        variant: str,
        experiment_decision: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.experiment_decision = experiment_decision
        self.monitors = monitors
        self.performance = performance
        self.baseline = dict(baseline)
        self.rate_window_seconds = rate_window_seconds
        self.min_requests = min_requests
        self.variant = variant
        self.model_version: str | None = None
        self._clock = clock
        # (time, requests, 5xx, latency bucket counts), cumulative since start, oldest first. The
        # counters start at zero with the process, so the first differences need no earlier reading.
        self._samples: deque[tuple[float, int, int, list[int]]] = deque(
            [(clock(), 0, 0, [0] * (len(LATENCY_BUCKETS) + 1))]
        )

    def observe(self, records: Sequence[PredictionRecord]) -> None:
        """A capture subscriber: remember the model version of the newest record. O(1)."""
        if records and records[-1].model_version is not None:
            self.model_version = records[-1].model_version

    def build(self, now: float | None = None) -> Signals:
        now = self._clock() if now is None else now
        values: dict[str, float | None] = {}
        values.update(self._serving(now))
        features, data = self._data()
        values.update(data)
        values.update(self._performance())
        decision = self.experiment_decision
        return Signals(
            values=values,
            features=features,
            model_version=self.model_version,
            top_drift=rank_drift(features.get("psi", {})),
            texts={"experiment_decision": None if decision is None else decision()},
        )

    def _serving(self, now: float) -> dict[str, float | None]:
        requests = errors = 0
        buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        for route in self.metrics.routes.values():
            for code, n in list(route.codes.items()):
                requests += n
                if code >= 500:
                    errors += n
            for i, n in enumerate(route.duration.counts):
                buckets[i] += n
        samples = self._samples
        samples.append((now, requests, errors, buckets))
        # Keep one sample at or before the window's start, as the base of the differences.
        while len(samples) > 1 and samples[1][0] <= now - self.rate_window_seconds:
            samples.popleft()
        _, base_requests, base_errors, base_buckets = samples[0]
        n = requests - base_requests
        if n < self.min_requests:
            return {"error_rate": None, "p99_latency_seconds": None}
        window = [b - a for a, b in zip(base_buckets, buckets, strict=True)]
        return {"error_rate": (errors - base_errors) / n, "p99_latency_seconds": histogram_quantile(0.99, window)}

    def _data(self) -> tuple[dict[str, dict[str, float | None]], dict[str, float | None]]:
        snapshot = self.monitors.snapshot
        quality = snapshot.quality
        values: dict[str, float | None] = {
            "volume": quality.volume.actual_per_second,
            "missing_periods": float(quality.volume.missing_run),
            "freshness_seconds": quality.freshness.request_age_seconds,
            "quality_violations": quality.recent.violations_per_record,
            "prediction_psi": None,
            "drifted_feature_share": None,
        }
        features: dict[str, dict[str, float | None]] = {"psi": {}, "ks_pvalue": {}, "chi2_pvalue": {}}
        drift = snapshot.drift
        if drift is None:
            return features, values
        for result in drift.features:
            psi, ks, chi2 = result.method("psi"), result.method("ks"), result.method("chi2")
            features["psi"][result.name] = None if psi is None else psi.score
            if ks is not None:
                features["ks_pvalue"][result.name] = ks.pvalue
            if chi2 is not None:
                features["chi2_pvalue"][result.name] = chi2.pvalue
        for output in drift.outputs:
            if output.name == "prediction" and (psi := output.method("psi")) is not None:
                values["prediction_psi"] = psi.score
        values["drifted_feature_share"] = drift.drifted_share
        return features, values

    def _performance(self) -> dict[str, float | None]:
        snapshot = self.performance.snapshot
        values: dict[str, float | None] = dict.fromkeys(PERFORMANCE_SIGNALS)
        values.update((name, value) for name, value in snapshot.metrics_of(self.variant).items() if name in values)
        values["label_coverage"] = snapshot.coverage_share
        accuracy, base = values["accuracy"], self.baseline.get("accuracy")
        values["accuracy_drop"] = None if accuracy is None or not base else (base - accuracy) / base
        return values


def histogram_quantile(q: float, counts: Sequence[int], bounds: Sequence[float] = LATENCY_BUCKETS) -> float | None:
    """The ``q`` quantile of non-cumulative bucket ``counts`` (the last one +Inf), as Prometheus estimates it.

    Linear within the bucket it falls in, the first bucket starting at 0; in
    the +Inf bucket it is the largest finite bound. None without observations.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            if i == len(bounds):
                return bounds[-1]
            lower = 0.0 if i == 0 else bounds[i - 1]
            return lower + (bounds[i] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]
