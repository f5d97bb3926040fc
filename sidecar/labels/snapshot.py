"""What the labels side publishes: one immutable :class:`LabelsSnapshot` per evaluation.

The :class:`~sidecar.labels.evaluate.PerformanceEvaluator` builds it every
``SIDECAR_EVAL_INTERVAL_SECONDS``. ``GET /api/v1/performance`` (rendered by
:mod:`sidecar.labels.views`) and the alert signals only read it: every figure
they show was computed before publication, so a request computes nothing and
never sees a half-updated state.

The label-delay histogram follows Prometheus: ``cumulative[i]`` counts the
joined labels that arrived at most ``DELAY_BUCKETS[i]`` seconds after their
prediction, and the last entry, for +Inf, equals the count.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.performance import MetricResult, PerformanceSnapshot, Task
from sidecar.store import OUTCOMES, Coverage

__all__ = ["DELAY_BUCKETS", "DelayHistogram", "LabelsSnapshot"]

# Seconds from prediction to label: from online feedback (a click) to a chargeback (weeks).
DELAY_BUCKETS: tuple[float, ...] = (
    1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86_400.0, 3 * 86_400.0, 7 * 86_400.0, 14 * 86_400.0,
    30 * 86_400.0, 90 * 86_400.0,
)  # fmt: skip


@dataclass(frozen=True)
class DelayHistogram:
    """Seconds from prediction to label, cumulative per upper bound as Prometheus keeps a histogram.

    ``cumulative`` has one count per bound of :data:`DELAY_BUCKETS`, then the
    +Inf one, which is :attr:`count`.

    Usage::

        histogram = DelayHistogram.of(per_bucket, sum_seconds=5400.0)  # per_bucket: one count per bucket
        histogram.cumulative[DELAY_BUCKETS.index(3600.0)]                # labels within the hour
    """

    cumulative: tuple[int, ...] = (0,) * (len(DELAY_BUCKETS) + 1)
    sum_seconds: float = 0.0

    def __post_init__(self) -> None:
        if len(self.cumulative) != len(DELAY_BUCKETS) + 1:
            raise ValueError(f"expected {len(DELAY_BUCKETS) + 1} cumulative counts, got {len(self.cumulative)}")

    @classmethod
    def of(cls, per_bucket: Sequence[int], sum_seconds: float) -> DelayHistogram:
        """From counts per bucket (not cumulative), the last one for delays beyond every bound."""
        return cls(tuple(itertools.accumulate(per_bucket)), sum_seconds)

    @property
    def count(self) -> int:
        return self.cumulative[-1]


@dataclass(frozen=True)
class LabelsSnapshot:
    """The live performance of one model, and how its labels arrive, as of ``taken_at``.

    ``performance`` holds the realised metrics of each (model, variant) over
    the labelled rows of the window; ``estimated`` the estimated accuracy over
    all predictions of each variant (classification only). ``coverage`` is None
    until the store has answered once; ``loaded`` says whether the window was
    read back from the store after start. ``outcomes`` and ``delay`` are the
    label counters since start; ``retraining`` is the retrainer's status after
    this evaluation's checks. ``task``, ``window_seconds`` and ``min_labels``
    are the settings the figures were computed with.

    Usage::

        snapshot = evaluator.snapshot
        snapshot.performance[0].metric("accuracy").value, snapshot.coverage_share, snapshot.delay.count
    """

    taken_at: float
    model: str
    task: Task
    window_seconds: float
    min_labels: int
    performance: tuple[PerformanceSnapshot, ...] = ()
    estimated: Mapping[str, MetricResult] = field(default_factory=dict)
    coverage: Coverage | None = None
    loaded: bool = False
    outcomes: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    delay: DelayHistogram = DelayHistogram()
    retraining: Mapping[str, Any] = field(default_factory=dict)
    # With the shared store: whether this replica computed the fleet's figures (the store's leader).
    # A replica that is not leads nothing: no performance, estimate, coverage or retraining in its
    # snapshot. None with the embedded store, where every replica is its own fleet.
    leader: bool | None = None

    @property
    def coverage_share(self) -> float | None:
        """The labelled share of the stored predictions in the window; None before any, or before the store answers."""
        coverage = self.coverage
        return coverage.labelled / coverage.predictions if coverage is not None and coverage.predictions else None

    def metrics_of(self, variant: str) -> dict[str, float | None]:
        """The realised metric values of this model's ``variant``, by name; empty before its first label."""
        for snapshot in self.performance:
            if snapshot.model == self.model and snapshot.variant == variant:
                return {metric.name: metric.value for metric in snapshot.metrics}
        return {}
