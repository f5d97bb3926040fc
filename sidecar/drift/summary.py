"""Summary statistics of one channel, from the window's mergeable sums.

The sums are weighted by 1/p and shifted by the reference mean ``c``:
``S = Σ w (x − c)`` and ``Q = Σ w (x − c)²`` over ``W = Σ w``. Then
``mean = c + S/W`` and the population variance is ``Q/W − (S/W)²``, which
stays accurate when the values are large and close together, because the
shift has removed their common part.
"""

from __future__ import annotations

import math

from sidecar.drift.snapshot import WindowStats
from sidecar.drift.window import WindowTotals

__all__ = ["window_stats", "effective_samples"]


def window_stats(totals: WindowTotals, j: int) -> WindowStats:
    """The summary statistics of channel ``j``."""
    channel = totals.channels[j]
    weight = float(totals.counts[channel.bins].sum())
    everything = weight + float(totals.null_weight[j])
    cardinality, exact = totals.distinct[j]
    mean = std = low = high = None
    if channel.dist.kind == "numeric" and weight > 0.0:
        centred = float(totals.sums[j]) / weight
        variance = max(float(totals.squares[j]) / weight - centred * centred, 0.0)
        mean = _finite(channel.shift + centred)
        std = _finite(math.sqrt(variance))
        low = _finite(float(totals.minimum[j]))
        high = _finite(float(totals.maximum[j]))
    return WindowStats(
        count=round(totals.rows - float(totals.nulls[j])),
        mean=mean,
        std=std,
        min=low,
        max=high,
        null_share=float(totals.null_weight[j]) / everything if everything > 0.0 else None,
        cardinality=cardinality,
        cardinality_exact=exact,
    )


def effective_samples(totals: WindowTotals, j: int) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²`` of channel ``j``'s non-null values."""
    weight = float(totals.counts[totals.channels[j].bins].sum())
    squares = totals.weight2 - float(totals.null_weight2[j])
    return weight * weight / squares if squares > 0.0 else 0.0


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
