"""Rows in, one :class:`PerformanceSnapshot` per (model, variant) out.

The computation is window-agnostic and stateless: the caller passes the rows
of the window (every stored prediction in it, labelled or not) and every
metric is recomputed from them at each evaluation. Accuracy, precision,
recall and the regression errors would merge as running sums, but AUC,
NDCG and the tie handling need the rows, and recomputing keeps one code path:
all classification metrics over 100,000 labelled rows take 0.2 to 0.3 s of
CPU on a busy two-core machine (``python -m benchmarks.performance_compute``).

Usage::

    config = PerformanceConfig(task="classification", positive_label="1", min_labels=100)
    for snapshot in compute(rows, config):
        snapshot.variant, snapshot.metric("auc_roc").value
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sidecar.performance.classification import classification_metrics
from sidecar.performance.estimate import estimated_accuracy_result
from sidecar.performance.ranking import ranking_metrics
from sidecar.performance.regression import regression_metrics
from sidecar.performance.rows import JoinedRow
from sidecar.performance.snapshot import MetricResult, PerformanceSnapshot
from sidecar.performance.task import PerformanceConfig

__all__ = ["compute", "compute_variant"]


def compute(rows: Iterable[JoinedRow], config: PerformanceConfig) -> tuple[PerformanceSnapshot, ...]:
    """The snapshots of every (model, variant) among ``rows``, sorted by model then variant."""
    groups: dict[tuple[str, str], list[JoinedRow]] = {}
    for row in rows:
        groups.setdefault((row.model, row.variant), []).append(row)
    return tuple(compute_variant(model, variant, groups[model, variant], config) for model, variant in sorted(groups))


def compute_variant(
    model: str, variant: str, rows: Sequence[JoinedRow], config: PerformanceConfig
) -> PerformanceSnapshot:
    """The snapshot of one (model, variant), from its rows."""
    labelled = [row for row in rows if row.label is not None]
    metrics: tuple[MetricResult, ...]
    if config.task == "classification":
        metrics = (*classification_metrics(labelled, config), estimated_accuracy_result(rows))
    elif config.task == "regression":
        metrics = regression_metrics(labelled, config)
    else:
        metrics = ranking_metrics(labelled, config)
    return PerformanceSnapshot(model, variant, config.task, len(rows), len(labelled), metrics)
