"""The body of ``GET /api/v1/performance``, rendered from a :class:`~sidecar.labels.snapshot.LabelsSnapshot` alone.

Rendering only: every figure comes from the snapshot, as of its
``evaluated_at``. The admin app adds the output-drift links, which come from
the data monitors' snapshot.

``label_delay_seconds`` reads like the Prometheus histogram
``mlsidecar_label_delay_seconds``: ``buckets`` maps each upper bound to the
number of joined labels that arrived at most that many seconds after their
prediction (cumulative), and ``"+Inf"`` equals ``count``. A bound is written
as a decimal number of seconds without an exponent (``"3600"``,
``"1209600"``), so ``float(key)`` reads every key back, ``"+Inf"`` included.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from sidecar.labels.snapshot import DELAY_BUCKETS, DelayHistogram, LabelsSnapshot
from sidecar.performance import MetricResult, PerformanceSnapshot
from sidecar.records import rfc3339

__all__ = ["bound_key", "delay_json", "performance_json"]


def performance_json(snapshot: LabelsSnapshot) -> dict[str, Any]:
    """The body of ``GET /api/v1/performance`` (without the output drift, which the admin app adds).

    Usage::

        body = performance_json(evaluator.snapshot)
        body["label_delay_seconds"]["buckets"]["3600"]   # labels that came within the hour
    """
    coverage = snapshot.coverage
    return {
        "evaluated_at": rfc3339(snapshot.taken_at),
        "task": snapshot.task,
        "window_seconds": snapshot.window_seconds,
        "min_labels": snapshot.min_labels,
        "loaded_from_store": snapshot.loaded,
        # The shared store: true on the replica that computed the fleet's figures, false on the others
        # (their variants, estimate, coverage and retraining are empty); null with the embedded store.
        "leader": snapshot.leader,
        "variants": [_variant_json(s, snapshot.estimated.get(s.variant)) for s in snapshot.performance],
        "estimated_accuracy": {variant: _metric_json(m) for variant, m in snapshot.estimated.items()},
        "label_coverage": None
        if coverage is None
        else {"predictions": coverage.predictions, "labelled": coverage.labelled, "share": snapshot.coverage_share},
        "labels": dict(snapshot.outcomes),
        "label_delay_seconds": delay_json(snapshot.delay),
        "retraining": dict(snapshot.retraining),
    }


def delay_json(histogram: DelayHistogram) -> dict[str, Any]:
    """``{"count", "sum", "buckets"}``, the buckets cumulative and keyed by :func:`bound_key`."""
    keys = [bound_key(bound) for bound in DELAY_BUCKETS] + [bound_key(math.inf)]
    return {
        "count": histogram.count,
        "sum": histogram.sum_seconds,
        "buckets": dict(zip(keys, histogram.cumulative, strict=True)),
    }


def bound_key(bound: float) -> str:
    """A bucket bound as a person reads it and ``float()`` parses it: ``3600``, ``0.5``, ``+Inf``."""
    if math.isinf(bound):
        return "+Inf"
    # Whole seconds as an integer ("1209600", not "1.2096e+06"); else the shortest exact decimal, spelled out.
    return str(int(bound)) if bound.is_integer() else format(Decimal(repr(bound)), "f")


def _metric_json(metric: MetricResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "value": metric.value,
        "status": metric.status,
        "samples": metric.samples,
        "weighted_samples": metric.weighted_samples,
    }
    if metric.reason is not None:
        out["reason"] = metric.reason
    if metric.excluded:
        out["excluded"] = metric.excluded
    return out


def _variant_json(snapshot: PerformanceSnapshot, estimated: MetricResult | None) -> dict[str, Any]:
    metrics = {metric.name: _metric_json(metric) for metric in snapshot.metrics}
    out: dict[str, Any] = {
        "model": snapshot.model,
        "variant": snapshot.variant,
        "labelled": snapshot.labelled,
        "metrics": metrics,
    }
    if "estimated_accuracy" in metrics:
        # Over the labelled rows only, where it meets the realised accuracy on the same rows:
        # a gap there is miscalibration, not a difference between labelled and unlabelled traffic.
        out["estimated_accuracy_on_labelled"] = metrics.pop("estimated_accuracy")
    if estimated is not None:
        metrics["estimated_accuracy"] = _metric_json(estimated)
    return out
