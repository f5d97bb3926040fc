"""What performance computation returns: immutable values, safe to hand to any reader.

Every metric carries the labelled samples behind it, raw and weighted, and a
status, so a reader never mistakes a placeholder for a measurement:

- ``"ok"``: ``value`` is a number;
- ``"insufficient_labels"``: fewer than ``min_labels`` usable labelled
  samples; ``value`` is None, never a number computed from too few;
- ``"unavailable"``: the metric is undefined on this data or cannot be
  computed from it; ``value`` is None and ``reason`` says why.

Usage::

    snapshot = compute(rows, config)[0]
    f1 = snapshot.metric("f1")
    f1.value, f1.status, f1.samples   # (0.87, "ok", 1520)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from sidecar.performance.task import Task

__all__ = ["Status", "MetricResult", "PerformanceSnapshot", "Undefined", "measure", "unavailable"]

Status = Literal["ok", "insufficient_labels", "unavailable"]


@dataclass(frozen=True)
class MetricResult:
    """One metric over one model variant's labelled rows.

    ``samples`` and ``weighted_samples`` count the rows the metric used (for
    ``estimated_accuracy``: predictions with a confidence, labelled or not);
    ``excluded`` counts the labelled rows it left out, e.g. zero targets for
    MAPE or rows without a full score vector for AUC.
    """

    name: str
    value: float | None
    samples: int
    weighted_samples: float
    status: Status
    reason: str | None = None
    excluded: int = 0


@dataclass(frozen=True)
class PerformanceSnapshot:
    """The metrics of one (model, variant) over the rows passed in.

    ``predictions`` counts every row, ``labelled`` those with a label.
    """

    model: str
    variant: str
    task: Task
    predictions: int
    labelled: int
    metrics: tuple[MetricResult, ...]

    def metric(self, name: str) -> MetricResult:
        """The result of one metric; KeyError if the task has no such metric."""
        for result in self.metrics:
            if result.name == name:
                return result
        raise KeyError(name)


class Undefined(NamedTuple):
    """A metric has no value on this data, and why (e.g. AUC with one class)."""

    reason: str


def measure(
    name: str,
    samples: int,
    weighted_samples: float,
    *,
    excluded: int,
    min_labels: int,
    value: Callable[[], float | Undefined],
) -> MetricResult:
    """Apply the minimum-labels rule, then compute: ``value`` is only called with at least one sample."""
    if samples < min_labels:
        reason = f"{samples} usable labelled samples, {min_labels} needed"
        if excluded:
            reason += f" ({excluded} labelled rows left out)"
        return MetricResult(name, None, samples, weighted_samples, "insufficient_labels", reason, excluded)
    outcome = value()
    if isinstance(outcome, Undefined):
        return MetricResult(name, None, samples, weighted_samples, "unavailable", outcome.reason, excluded)
    return MetricResult(name, outcome, samples, weighted_samples, "ok", None, excluded)


def unavailable(name: str, reason: str, *, excluded: int = 0) -> MetricResult:
    """A metric that cannot be computed whatever the number of labels (e.g. no score vectors)."""
    return MetricResult(name, None, 0, 0.0, "unavailable", reason, excluded)
