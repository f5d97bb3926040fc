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
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sidecar.performance.rows import JoinedRow
from sidecar.performance.snapshot import MetricResult, unavailable

__all__ = ["estimated_accuracy", "estimated_accuracy_result"]

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
