"""Wasserstein-1 distance between reference and current, from the reference bins and the summary statistics.

``W₁ = ∫ |F_ref(x) − F_cur(x)| dx``, the area between the two CDFs: how far,
in the feature's own units, the mass has to move to turn one distribution
into the other. Divided by the reference standard deviation it is
Evidently's "normed Wasserstein" (drift at 0.1): 0.3 for a shift of 0.3σ,
whatever the feature's units. The reference std is floored at 0.001, as
Evidently floors it, so a constant reference still gives a number.

The sidecar keeps counts over the reference bins, not samples, so W₁ is
approximated in three parts:

- **Inner bins** (between the first and last edge): both CDFs are known
  exactly at the edges, and taken as linear between them (values spread
  evenly within a bin). The difference of the CDFs is then linear on each
  bin, and its absolute value is integrated exactly, a sign change included.
- **The two open-ended bins**, per side: the density is taken to go on from
  the adjacent inner bin and to fall off exponentially, so the tail's area
  under the CDF is its share times a length ``d = share · width₁ / share₁``
  (the adjacent bin's width and share), at most the distance from the edge
  to the side's own minimum (maximum), which the profile and the window
  record. For evenly spread values ``d`` is the adjacent bin's width.
- **The means pin the tails.** ``∫ (F_ref − F_cur) dx = mean_cur − mean_ref``
  exactly, and both means are known (the profile's; the window's from its
  sums). What the inner part leaves of that difference is what the two
  tails hold together, so their modelled areas are corrected to add up to
  it, each in proportion to its size. A location shift therefore comes out
  within the inner bins' interpolation error, even a shift far past the
  reference's range; what the means cannot see is how a change of spread
  splits between the two tails, which the model supplies.

Against ``scipy.stats.wasserstein_distance`` on the raw samples behind the
bins (10 quantile bins, 20,000 reference and 3,000 current values): within
1 % for location shifts of 0.1σ to 3σ, skewed and discrete data included;
within 30 % for changes of the standard deviation by 20–30 %, whose tails
the model supplies; and within 0.012 (normed) with no change at all, where
both are sampling noise of about 0.02. ``tests/drift/test_wasserstein.py``
pins those. A reference with fewer than two edges has no inner bin to model
the tails from, and its distance is the difference of the means, a lower
bound.

Usage::

    edges = np.array([-1.0, 0.0, 1.0])
    reference = Side(shares=np.array([0.2, 0.3, 0.3, 0.2]), mean=0.0, low=-3.0, high=3.0)
    current = Side(shares=np.array([0.1, 0.25, 0.35, 0.3]), mean=0.5, low=-2.5, high=3.5)
    wasserstein_binned(edges, reference, current)         # 0.5: every value moved by 0.5
    normed_wasserstein(edges, reference, current, 2.0)    # 0.25, with a reference std of 2
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["STD_FLOOR", "Side", "normed_wasserstein", "wasserstein_binned"]

STD_FLOOR = 0.001

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Side:
    """One distribution over the reference bins: its shares (summing to 1), and its values' mean and range.

    A None (or non-finite) mean, low or high is unknown: the tails are then
    not pinned by the means, or not bounded by the range.
    """

    shares: Floats
    mean: float | None
    low: float | None
    high: float | None


def normed_wasserstein(edges: Floats, reference: Side, current: Side, reference_std: float | None) -> float:
    """:func:`wasserstein_binned` over the reference standard deviation (floored at :data:`STD_FLOOR`)."""
    return wasserstein_binned(edges, reference, current) / max(reference_std or 0.0, STD_FLOOR)


def wasserstein_binned(edges: Floats, reference: Side, current: Side) -> float:
    """W₁ in the feature's units, from the shares over the bins that the inner ``edges`` cut (see module doc)."""
    # F_ref − F_cur at each edge; the CDFs' last value is 1 on both sides.
    gaps = np.cumsum(reference.shares[:-1]) - np.cumsum(current.shares[:-1])
    inner_area = inner_signed = 0.0
    if len(edges) >= 2:
        a, b, widths = gaps[:-1], gaps[1:], np.diff(edges)
        crossing = a * b < 0.0
        # A linear function from a to b: area (|a| + |b|)/2 without a sign change, (a² + b²) / 2|a − b| with one.
        with np.errstate(divide="ignore", invalid="ignore"):
            per_width = np.where(crossing, (a * a + b * b) / (2.0 * np.abs(a - b)), (np.abs(a) + np.abs(b)) / 2.0)
        inner_area = float(np.sum(per_width * widths))
        inner_signed = float(np.sum((a + b) / 2.0 * widths))
    # The tails' signed areas of F_ref − F_cur: below the first edge, and above the last.
    left = _tail(reference, edges, upper=False) - _tail(current, edges, upper=False)
    right = _tail(current, edges, upper=True) - _tail(reference, edges, upper=True)
    shift = _difference(current.mean, reference.mean)
    if shift is not None:
        missing = shift - inner_signed - left - right
        size = abs(left) + abs(right)
        if size > 0.0:
            left, right = left + missing * abs(left) / size, right + missing * abs(right) / size
        else:
            left = right = (shift - inner_signed) / 2.0
    return inner_area + abs(left) + abs(right)


def _tail(side: Side, edges: Floats, *, upper: bool) -> float:
    """The area under one side's CDF below the first edge (or under 1 − CDF past the last): share × length."""
    if len(edges) < 2:
        return 0.0  # no inner bin to continue the density from: left to the means
    if upper:
        share, next_share, width = side.shares[-1], side.shares[-2], edges[-1] - edges[-2]
        room = _difference(side.high, float(edges[-1]))
    else:
        share, next_share, width = side.shares[0], side.shares[1], edges[1] - edges[0]
        room = _difference(float(edges[0]), side.low)
    if share <= 0.0:
        return 0.0
    length = share * width / next_share if next_share > 0.0 else width
    if room is not None:
        length = min(length, max(room, 0.0))
    return float(share * length)


def _difference(a: float | None, b: float | None) -> float | None:
    """``a − b``, or None when either is unknown or not finite."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a - b
