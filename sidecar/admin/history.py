"""The status page's memory of the last hours: a bounded ring of past evaluations.

The snapshots the page renders hold only the latest evaluation. :class:`History`
keeps, for each data snapshot the evaluator publishes (a new ``taken_at``,
never a page load), one point: its time, the PSI of every feature, the
primary variant's realised metrics and estimated accuracy, and the cumulative
request counters (requests, 5xx responses, latency buckets), from which the
page reads request rates and latency quantiles between points. The counters
are read through :class:`~sidecar.serving.metrics.ServingCounts`: the
proxy's own, or their mirror in the monitoring process.

It copies numbers the evaluators already computed; it computes no statistic.

Memory is bounded by the count of points, whatever the traffic: ``capacity``
points (default :data:`CAPACITY`, 720: three hours at the default
``SIDECAR_EVAL_INTERVAL_SECONDS=15``) of ``8 × (features + metrics + 19)``
bytes, in arrays allocated up front (the PSI's again when the features
change). At the default ``SIDECAR_MAX_FEATURES=200`` and classification's
seven metrics that is 720 × 226 × 8 B ≈ 1.3 MB.

When the reference's features change (a learned reference replaces the
warm-up, or another profile is loaded), the PSI of the points before is
dropped: scores against another reference are not comparable.

Usage::

    history = History(monitors, performance, serving)   # ProxyMetrics, or its mirror in the monitoring process
    task = asyncio.create_task(history.run(interval=15))   # records each new snapshot
    view = history.view()
    view.times, view.psi["income"], view.metrics["accuracy"]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.monitoring.evaluator import DataMonitors
from sidecar.performance import METRICS
from sidecar.serving.metrics import LATENCY_BUCKETS, ServingCounts

__all__ = ["CAPACITY", "ESTIMATED", "History", "HistoryView"]

logger = logging.getLogger("sidecar.admin.history")

CAPACITY: Final = 720
# The column of the estimated accuracy over all predictions, beside the realised metrics of the labelled ones.
ESTIMATED: Final = "estimated_accuracy"

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HistoryView:
    """The points in time order, copied out of the ring: safe to read while the ring moves on.

    A value that was unknown (too little data, too few labels) is NaN. The
    counters are cumulative since the sidecar started; ``latency`` has one
    row per point and one column per latency bucket, +Inf last.
    """

    times: Floats
    psi: Mapping[str, Floats]
    metrics: Mapping[str, Floats]
    requests: Floats
    errors: Floats
    latency: Floats

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def empty(cls) -> HistoryView:
        """No points: what the page shows where no history is kept."""
        none = np.zeros(0)
        return cls(none, {}, {}, none, none, np.zeros((0, len(LATENCY_BUCKETS) + 1)))


class History:
    """A ring of the last ``capacity`` evaluations' scores and counters (see the module docstring for its bound)."""

    def __init__(
        self,
        monitors: DataMonitors,
        performance: PerformanceEvaluator,
        serving: ServingCounts,
        *,
        capacity: int = CAPACITY,
    ) -> None:
        if capacity < 2:
            raise ValueError(f"a history needs at least 2 points to show a change, got capacity={capacity}")
        self.monitors = monitors
        self.performance = performance
        self.serving = serving
        self.capacity = capacity
        # The task's metrics; in the estimated accuracy's column goes the estimate over all predictions, not
        # the one over labelled rows: it is the one that says something before the labels come.
        self.metric_names: tuple[str, ...] = METRICS[performance.snapshot.task]
        self.features: tuple[str, ...] = ()
        self._times = np.zeros(capacity)
        self._psi = np.full((capacity, 0), np.nan)
        self._metrics = np.full((capacity, len(self.metric_names)), np.nan)
        self._counters = np.zeros((capacity, 2))  # requests, 5xx responses
        self._latency = np.zeros((capacity, len(LATENCY_BUCKETS) + 1))
        self._next = 0  # the slot the next point goes in
        self._size = 0
        self._last: float | None = None  # taken_at of the newest snapshot recorded

    def record(self) -> bool:
        """Add a point for the data monitors' snapshot if it is new; True if one was added. O(features)."""
        snapshot = self.monitors.snapshot
        if snapshot.taken_at == self._last:
            return False
        self._last = snapshot.taken_at
        i = self._next
        drift = snapshot.drift
        names = () if drift is None else tuple(result.name for result in drift.features)
        if names != self.features:
            self.features = names
            self._psi = np.full((self.capacity, len(names)), np.nan)
        if drift is not None:
            for j, result in enumerate(drift.features):
                psi = result.method("psi")
                self._psi[i, j] = np.nan if psi is None or psi.score is None else psi.score
        self._times[i] = snapshot.taken_at
        self._metrics[i] = self._metric_values()
        self._counters[i], self._latency[i] = self._traffic()
        self._next = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)
        return True

    def _metric_values(self) -> list[float]:
        labels = self.performance.snapshot
        variant = self.performance.primary_variant
        values: dict[str, float | None] = dict(labels.metrics_of(variant))
        estimated = labels.estimated.get(variant)
        values[ESTIMATED] = None if estimated is None else estimated.value
        return [np.nan if (v := values.get(name)) is None else v for name in self.metric_names]

    def _traffic(self) -> tuple[list[float], Floats]:
        requests = errors = 0
        latency = np.zeros(len(LATENCY_BUCKETS) + 1)
        for route in self.serving.routes.values():
            for code, n in list(route.codes.items()):
                requests += n
                if code >= 500:
                    errors += n
            latency += route.duration.counts
        return [float(requests), float(errors)], latency

    def view(self) -> HistoryView:
        """The recorded points, oldest first, as copies."""
        order = (np.arange(self._size) + self._next - self._size) % self.capacity
        times = self._times[order]
        return HistoryView(
            times=times,
            psi={name: self._psi[order, j] for j, name in enumerate(self.features)},
            metrics={name: self._metrics[order, j] for j, name in enumerate(self.metric_names)},
            requests=self._counters[order, 0],
            errors=self._counters[order, 1],
            latency=self._latency[order],
        )

    async def run(self, interval: float) -> None:
        """Record every new snapshot until cancelled; ``interval`` is ``SIDECAR_EVAL_INTERVAL_SECONDS``.

        Polled at half the evaluators' interval, so that no snapshot is missed
        although the two loops drift apart; a snapshot seen twice is recorded once.
        """
        while True:
            await asyncio.sleep(interval / 2)
            try:
                self.record()
            except Exception:
                # The history is a view: a failure must not stop the sidecar, and the next snapshot may succeed.
                logger.exception("recording the status page's history failed")
