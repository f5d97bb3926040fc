"""Model performance from delayed labels: joined rows in, weighted metrics out.

Labels arrive late; the label store joins them to stored predictions and the
evaluator hands the joined rows of the window to :func:`compute`. Every
metric is weighted by the rows' 1/p sampling weights (Horvitz-Thompson), so
it equals scikit-learn's with ``sample_weight`` and estimates the metric of
all traffic, not of the sample. The pieces, by concept:

- :mod:`.task`: :class:`PerformanceConfig`, and the tasks and metric names
  per task from :mod:`sidecar.syntax.performance`;
- :mod:`.rows`: :class:`JoinedRow`, a prediction and its label;
- :mod:`.labels`: :func:`validate_label` for the HTTP layer, and
  :func:`class_key`, how class values compare;
- the metrics, one concept each: :mod:`.classification` (accuracy,
  precision, recall, F1), :mod:`.scores` (AUC-ROC, log loss),
  :mod:`.regression`, :mod:`.ranking`, :mod:`.estimate` (accuracy estimated
  from confidence);
- :mod:`.snapshot`: the immutable results; :mod:`.compute` ties them together.

Nothing here imports a web framework: plain rows in, plain values out.

Usage::

    config = PerformanceConfig(task="regression", min_labels=50)
    rows = [JoinedRow.from_record(record, label) for record, label in joined]
    snapshot = compute(rows, config)[0]
    snapshot.metric("mape")  # MetricResult(name="mape", value=0.12, samples=480, ..., excluded=3)
"""

from __future__ import annotations

from sidecar.performance.compute import compute, compute_variant
from sidecar.performance.labels import class_key, validate_label
from sidecar.performance.rows import JoinedRow
from sidecar.performance.snapshot import MetricResult, PerformanceSnapshot, Status
from sidecar.performance.task import METRICS, TASKS, PerformanceConfig, Task

__all__ = [
    "METRICS",
    "TASKS",
    "JoinedRow",
    "MetricResult",
    "PerformanceConfig",
    "PerformanceSnapshot",
    "Status",
    "Task",
    "class_key",
    "compute",
    "compute_variant",
    "validate_label",
]
