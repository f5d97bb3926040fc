"""Accuracy estimated from confidence, before any label arrives (CBPE-style).

For a calibrated classifier, a prediction made with top probability ``c`` is
right with probability ``c``, so the expected accuracy of a set of
predictions is their mean confidence. Here it is the weighted mean
``Σ w·c / Σ w`` over every prediction with a confidence in [0, 1], labelled or
not, to show next to the realised accuracy: a gap between the two means the
model's calibration has drifted, and the estimate alone tracks performance
while labels are still on their way. It is only as good as the calibration.

Usage::

    estimated_accuracy(np.array([0.9, 0.6]), np.array([1.0, 2.0]))  # 0.7
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sidecar.performance.rows import JoinedRow
from sidecar.performance.snapshot import MetricResult, unavailable

__all__ = ["ConfidenceWindow", "estimated_accuracy", "estimated_accuracy_result", "window_estimate"]

Floats = npt.NDArray[np.float64]


def estimated_accuracy(confidence: Floats, weights: Floats) -> float:
    """The weighted mean confidence."""
    return float(np.average(confidence, weights=weights))


def estimated_accuracy_result(rows: Sequence[JoinedRow]) -> MetricResult:
    """``estimated_accuracy`` over all rows of one variant; its samples are predictions, not labels."""
    confidence = np.fromiter(
        (math.nan if row.confidence is None else row.confidence for row in rows), dtype=np.float64, count=len(rows)
    )
    usable = (confidence >= 0.0) & (confidence <= 1.0)  # NaN fails both
    if not usable.any():
        return unavailable("estimated_accuracy", "no prediction carried a confidence")
    weights = np.fromiter((row.weight for row in rows), dtype=np.float64, count=len(rows))[usable]
    value = estimated_accuracy(confidence[usable], weights)
    return MetricResult("estimated_accuracy", value, int(usable.sum()), float(weights.sum()), "ok")


def window_estimate(mean: float, weight: float, predictions: float) -> MetricResult:
    """``estimated_accuracy`` from a window's sums: the weighted mean confidence, its weight and prediction count.

    A replica's own window (:class:`ConfidenceWindow`) and the shared store's fleet-wide sums
    (``PredictionStore.estimated``) both end here.
    """
    if weight <= 0:
        return unavailable("estimated_accuracy", "no prediction with a confidence in the window")
    return MetricResult("estimated_accuracy", mean, int(predictions), weight, "ok")


class ConfidenceWindow:
    """Running sums of weighted confidence per variant, over a sliding window of prediction time.

    The estimate covers every captured prediction, labelled or not, and there
    are far more of those than labelled rows; keeping the rows would cost
    memory for a mean. So each of ``buckets`` time buckets holds, per
    variant, ``Σ w·c``, ``Σ w`` and the count: an update is O(1), the window
    slides by whole buckets (its edge is accurate to ``window / buckets``).

    Usage::

        window = ConfidenceWindow(window_seconds=86400)
        window.add("primary", confidence=0.9, weight=4.0, now=time.time())
        window.result("primary", now=time.time())  # MetricResult("estimated_accuracy", 0.9, 1, 4.0, "ok")
    """

    def __init__(self, window_seconds: float, buckets: int = 120) -> None:
        if not (window_seconds > 0 and buckets >= 1):
            raise ValueError("window_seconds must be positive and buckets at least 1")
        self.window_seconds = window_seconds
        self._width = window_seconds / buckets
        self._buckets: deque[tuple[int, dict[str, list[float]]]] = deque()

    def add(self, variant: str, confidence: float | None, weight: float, now: float) -> None:
        """Count one prediction; one without a confidence in [0, 1] is left out, as in :func:`estimated_accuracy`."""
        if confidence is None or not 0.0 <= confidence <= 1.0:
            return
        index = int(now // self._width)
        buckets = self._buckets
        if not buckets or buckets[-1][0] != index:
            buckets.append((index, {}))
            self._expire(now)
        sums = buckets[-1][1].get(variant)
        if sums is None:
            sums = buckets[-1][1][variant] = [0.0, 0.0, 0.0]
        sums[0] += weight * confidence
        sums[1] += weight
        sums[2] += 1

    def result(self, variant: str, now: float) -> MetricResult:
        """``estimated_accuracy`` of one variant over the window ending ``now``."""
        self._expire(now)
        weighted = total = count = 0.0
        for _, variants in self._buckets:
            sums = variants.get(variant)
            if sums is not None:
                weighted += sums[0]
                total += sums[1]
                count += sums[2]
        return window_estimate(weighted / total if total > 0 else 0.0, total, count)

    def variants(self) -> set[str]:
        return {variant for _, variants in self._buckets for variant in variants}

    def _expire(self, now: float) -> None:
        oldest = int((now - self.window_seconds) // self._width)
        buckets = self._buckets
        while buckets and buckets[0][0] <= oldest:
            buckets.popleft()
