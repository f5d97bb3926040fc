"""The data-monitoring metrics, read from the monitors at scrape time.

Drift scores and p-values come from the evaluator's latest snapshot, never
computed here. The per-bin observation counters and the quality violation
counters are read from the live counts (cheap: one sample per bin), so a
scrape between evaluations still sees every record counted so far.

Label values come from the reference profile (features, bins, categories)
and from fixed lists (methods, checks), never from payloads. Scores with
insufficient data are absent, not zero, so no dashboard reads "no drift"
where there is no evidence.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.drift import DriftResult
from sidecar.monitoring.evaluator import DataMonitors
from sidecar.monitoring.learning import LeftOut
from sidecar.prometheus import PREFIX

__all__ = ["DataMetrics"]


class DataMetrics(Collector):
    """Drift, quality and reference metrics for one model, as the README's "Metrics" table names them."""

    def __init__(self, model: str, monitors: DataMonitors) -> None:
        self.model = model
        self.monitors = monitors

    def collect(self) -> Iterable[Metric]:
        model = self.model
        monitors = self.monitors
        snapshot = monitors.snapshot
        profile = monitors.profile

        observations = CounterMetricFamily(
            PREFIX + "feature_bin_observations_total",
            "Current traffic per reference bin, weighted by 1/p; Prometheus sums these across replicas.",
            labels=("model", "feature", "bin"),
        )
        ratios = GaugeMetricFamily(
            PREFIX + "feature_reference_bin_ratio",
            "Reference share of each bin; identical on every replica with the same profile.",
            labels=("model", "feature", "bin"),
        )
        info = GaugeMetricFamily(
            PREFIX + "reference_info", "The reference profile in use (1).", labels=("model", "version")
        )
        if monitors.tracker is not None and profile is not None:
            for source, name, bin_label, total in monitors.tracker.bin_observations():
                if source == "feature":
                    observations.add_metric((model, name, bin_label), total)
            for name, dist in profile.features.items():
                total_ratio = sum(dist.ratios) or 1.0
                for bin_label, ratio in zip(dist.labels, dist.ratios, strict=True):
                    ratios.add_metric((model, name, bin_label), ratio / total_ratio)
            info.add_metric((model, profile.version), 1.0)
        yield observations
        yield ratios
        yield info

        left_out = GaugeMetricFamily(
            PREFIX + "reference_features_left_out",
            "Keys of the warm-up traffic a learned reference did not make features: in too few rows (rare), with "
            "a name too long (long_name), or past SIDECAR_MAX_FEATURES (max_features); 0 for a profile from a file.",
            labels=("model", "reason"),
        )
        counts = snapshot.reference.left_out or LeftOut()
        for reason, n in counts.as_dict().items():
            left_out.add_metric((model, reason), n)
        yield left_out

        scores = GaugeMetricFamily(
            PREFIX + "feature_drift_score",
            "Drift score per feature: PSI, the KS statistic D, the chi-square statistic, or the effect size"
            " (wasserstein: Wasserstein-1 over the reference std; jensenshannon: Jensen-Shannon distance); absent"
            " below the minimum sample count.",
            labels=("model", "feature", "method"),
        )
        pvalues = GaugeMetricFamily(
            PREFIX + "feature_drift_pvalue",
            "Raw p-value of the KS or chi-square test per feature; absent below the minimum sample count.",
            labels=("model", "feature", "method"),
        )
        corrected = GaugeMetricFamily(
            PREFIX + "feature_drift_corrected_pvalue",
            "p-value of the KS or chi-square test per feature, Holm-corrected across the features of one"
            " evaluation: the shift is real below SIDECAR_DRIFT_ALPHA; absent below the minimum sample count.",
            labels=("model", "feature", "method"),
        )
        outputs = GaugeMetricFamily(
            PREFIX + "prediction_drift_score",
            "Drift score of the model's outputs (prediction, confidence) and of received labels (label): PSI, the"
            " test statistic, or the effect size.",
            labels=("model", "output", "method"),
        )
        output_pvalues = GaugeMetricFamily(
            PREFIX + "prediction_drift_pvalue",
            "Raw p-value of the KS or chi-square test of the model's outputs and of received labels.",
            labels=("model", "output", "method"),
        )
        output_corrected = GaugeMetricFamily(
            PREFIX + "prediction_drift_corrected_pvalue",
            "p-value of the KS or chi-square test of the model's outputs (Holm-corrected across the outputs) and"
            " of received labels (a family of one, so uncorrected).",
            labels=("model", "output", "method"),
        )
        share = GaugeMetricFamily(
            PREFIX + "drifted_feature_share",
            "Share of the features with enough data whose verdict (SIDECAR_DRIFT_VERDICT) is drift.",
            labels=("model",),
        )
        drift = snapshot.drift
        if drift is not None:
            for result in drift.features:
                _add_scores((scores, pvalues, corrected), (model, result.name), result)
            for result in (*drift.outputs, *((drift.label,) if drift.label is not None else ())):
                _add_scores((outputs, output_pvalues, output_corrected), (model, result.name), result)
            if drift.drifted_share is not None:
                share.add_metric((model,), drift.drifted_share)
        yield scores
        yield pvalues
        yield corrected
        yield outputs
        yield output_pvalues
        yield output_corrected
        yield share

        violations = CounterMetricFamily(
            PREFIX + "data_quality_violations_total",
            "Data-quality violations per feature and check (records, not weights).",
            labels=("model", "feature", "check"),
        )
        for (feature, check), n in sorted(monitors.quality.counts().items()):
            violations.add_metric((model, feature, check), n)
        yield violations
        records = CounterMetricFamily(
            PREFIX + "quality_records_total",
            "Captured records (rows) the data-quality checks have seen: the denominator of violations per record.",
            labels=("model",),
        )
        records.add_metric((model,), monitors.quality.records_total)
        yield records


_Families = tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]


def _add_scores(families: _Families, labels: tuple[str, str], result: DriftResult) -> None:
    """Each method's score, raw p-value and corrected p-value into the three families, where it has them."""
    scores, pvalues, corrected = families
    for method in result.methods:
        for family, value in ((scores, method.score), (pvalues, method.pvalue), (corrected, method.corrected_pvalue)):
            if value is not None:
                family.add_metric((*labels, method.method), value)
