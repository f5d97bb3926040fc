"""The streaming window: a ring of time slices of weighted per-bin counts and mergeable sums.

A :class:`Window` counts the values of a fixed list of channels (features, or
model outputs, or labels), each with its reference :class:`Distribution`.
Time is cut into slices of ``slice_seconds``, numbered ``floor(t /
slice_seconds)``; the window is the last ``slices`` of them, the current
partial slice included.

- **The current slice** lives in plain Python lists, one cell per bin and per
  channel: :meth:`Window.add` is pure Python, O(channels) per record, and
  creates no containers (numpy scalar operations cost about 1 µs each, and a
  record of 20 features has about 20 µs in all).
- **Rotation.** When time reaches a new slice, :meth:`Window.advance` copies
  the current slice into its row of preallocated numpy arrays (slices ×
  bins and slices × channels) and starts the lists afresh: O(bins) once per
  slice. A slice without traffic is never written, so it counts as zero.
- **Expiry.** Each row remembers the number of its slice. :meth:`Window.totals`
  sums only the rows whose slice lies in the window, so an expired slice is
  never read, and its row is overwritten when its turn comes round again.
- **Sums per slice and channel:** the weighted bin counts (their sum is the
  weighted non-null count), the raw and weighted null counts, the weighted
  sum of ``x − shift`` and of its square (numeric channels; ``shift`` is the
  reference mean, so that the variance does not cancel away for large
  values), min, max, and the distinct values up to a cap (:mod:`.distinct`);
  per slice, the records, their total weight and total squared weight. All
  of it adds up across slices (min and max by min and max).

A null, NaN, or a value that is not a number in a numeric channel falls in no
bin and counts as a null, as :meth:`Distribution.bin_of` has it. Weights are
the records' ``1/p``.

Usage::

    window = Window([("age", age_distribution)], slices=60, slice_seconds=60.0, now=clock())
    window.advance(clock())          # once per batch
    window.add([41.0], weight=2.0)   # once per record: its values in window.feed_order
    totals = window.totals(clock())  # copies, for the evaluator
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar.drift.distinct import CAP, SliceDistinct, count_distinct
from sidecar.reference import Distribution, category_key

__all__ = ["Channel", "Window", "WindowTotals"]

Floats = npt.NDArray[np.float64]
_NEVER = np.iinfo(np.int64).min  # the slice number of a row never written
# Rows of the per-slice sums array, one value per channel each.
_NULLS, _NULL_WEIGHT, _NULL_WEIGHT2, _SUMS, _SQUARES = range(5)


@dataclass(frozen=True)
class Channel:
    """One counted thing: its name, its reference, and where its bins start in the flat arrays."""

    name: str
    dist: Distribution
    offset: int
    shift: float

    @property
    def bins(self) -> slice:
        return slice(self.offset, self.offset + self.dist.bins)


@dataclass(frozen=True, eq=False)
class WindowTotals:
    """The window's sums at one instant, in arrays the window no longer touches.

    ``counts`` has one cell per bin (channels back to back, see
    :attr:`Channel.bins`); the other arrays have one cell per channel.
    """

    channels: tuple[Channel, ...]
    rows: int
    weight: float
    weight2: float
    counts: Floats
    nulls: Floats
    null_weight: Floats
    null_weight2: Floats
    sums: Floats
    squares: Floats
    minimum: Floats
    maximum: Floats
    distinct: tuple[tuple[int, bool], ...]


class Window:
    """Weighted per-bin counts and summary sums of some channels over a sliding time window (see module doc)."""

    def __init__(
        self, channels: Sequence[tuple[str, Distribution]], *, slices: int, slice_seconds: float, now: float
    ) -> None:
        built: list[Channel] = []
        offset = 0
        for name, dist in channels:
            shift = dist.stats.mean if dist.kind == "numeric" and dist.stats.mean is not None else 0.0
            built.append(Channel(name, dist, offset, shift))
            offset += dist.bins
        self.channels = tuple(built)
        # The hot loop takes numeric channels first, then categorical ones, so
        # that each loop unpacks only what its kind needs and tests no kind.
        numeric = [j for j, c in enumerate(self.channels) if c.dist.kind == "numeric"]
        categorical = [j for j, c in enumerate(self.channels) if c.dist.kind == "categorical"]
        self.feed_order = tuple(self.channels[j].name for j in numeric + categorical)
        self._distinct = SliceDistinct([c.dist.kind == "numeric" for c in self.channels])
        seen = self._distinct.seen
        self._numeric = tuple(
            (j, self.channels[j].dist.edges, self.channels[j].offset, self.channels[j].shift, seen[j]) for j in numeric
        )
        self._categorical = tuple(
            (
                j,
                seen[j],
                {category: self.channels[j].offset + i for i, category in enumerate(self.channels[j].dist.categories)},
                self.channels[j].offset + len(self.channels[j].dist.categories),  # the unseen bucket
            )
            for j in categorical
        )
        self._slices = slices
        self._slice_seconds = slice_seconds
        n, bins, width = slices, offset, len(self.channels)
        self._ids = np.full(n, _NEVER, dtype=np.int64)
        self._ring_rows = np.zeros((n, 3))  # records, weight, squared weight
        self._ring_counts = np.zeros((n, bins))
        self._ring_sums = np.zeros((n, 5, width))
        self._ring_min = np.full((n, width), np.inf)
        self._ring_max = np.full((n, width), -np.inf)
        self._ring_codes = np.zeros((n, width, CAP), dtype=np.int64)
        self._ring_distinct = np.zeros((n, width), dtype=np.int64)  # how many of each row's codes are in use
        self._cumulative = np.zeros(bins)  # every folded slice since start: the Prometheus counters
        self._slice = self._slice_of(now)
        self._reset()

    def _reset(self) -> None:
        width = len(self.channels)
        self._rows = 0
        self._weight = 0.0
        self._weight2 = 0.0
        self._counts = [0.0] * len(self._cumulative)
        self._nulls = [0.0] * width
        self._null_weight = [0.0] * width
        self._null_weight2 = [0.0] * width
        self._sums = [0.0] * width
        self._squares = [0.0] * width
        self._min = [math.inf] * width
        self._max = [-math.inf] * width

    def _slice_of(self, t: float) -> int:
        return math.floor(t / self._slice_seconds)

    def advance(self, now: float) -> None:
        """Start the slice of ``now`` if it is a later one. A clock that steps back keeps counting into the current."""
        number = self._slice_of(now)
        if number > self._slice:
            if self._rows:
                self._fold()
            self._slice = number

    def _fold(self) -> None:
        row = self._slice % self._slices
        self._ids[row] = self._slice
        self._ring_rows[row] = (self._rows, self._weight, self._weight2)
        self._ring_counts[row] = self._counts
        self._cumulative += self._ring_counts[row]
        self._ring_sums[row] = (self._nulls, self._null_weight, self._null_weight2, self._sums, self._squares)
        self._ring_min[row] = self._min
        self._ring_max[row] = self._max
        self._distinct.fold(self._ring_codes[row], self._ring_distinct[row])
        self._reset()

    def add(self, values: Iterable[Any], weight: float) -> None:
        """Count one record: its values in :attr:`feed_order`, and its weight. This is the hot path."""
        w = weight
        self._rows += 1
        self._weight += w
        self._weight2 += w * w
        counts, sums, squares, low, high = self._counts, self._sums, self._squares, self._min, self._max
        # One iterator for both loops: the first stops at the end of the numeric
        # channels, the second checks that the values end with the categorical ones.
        values = iter(values)
        for (j, edges, offset, shift, seen), v in zip(self._numeric, values, strict=False):
            if type(v) is not float:
                if v is None:
                    self._null(j, w)
                    continue
                try:
                    v = float(v)  # ints, bools, numeric strings: as Distribution.bin_of reads them
                except (TypeError, ValueError, OverflowError):  # not a number: no bin, like a null
                    v = math.nan
            if v != v:  # NaN
                self._null(j, w)
                continue
            counts[offset + bisect_left(edges, v)] += w
            d = v - shift
            wd = w * d
            sums[j] += wd
            squares[j] += wd * d
            if v < low[j]:
                low[j] = v
            if v > high[j]:
                high[j] = v
            if len(seen) < CAP:
                seen.add(v)
        for (j, seen, index, unseen), v in zip(self._categorical, values, strict=True):
            if type(v) is not str:
                if v is None:
                    self._null(j, w)
                    continue
                try:
                    v = category_key(v)  # 1 and 1.0 are one category, as in Distribution.bin_of
                except TypeError:  # what JSON cannot name (an integer beyond 64 bits) is no category
                    v = repr(v)
            counts[index.get(v, unseen)] += w
            if len(seen) < CAP:
                seen.add(v)

    def _null(self, j: int, w: float) -> None:
        self._nulls[j] += 1.0
        self._null_weight[j] += w
        self._null_weight2[j] += w * w

    def observations(self) -> Iterator[tuple[Channel, str, float]]:
        """Weighted observations per bin since start, monotonic: ``(channel, bin label, total)``."""
        current = self._counts
        for channel in self.channels:
            for i, label in enumerate(channel.dist.labels, start=channel.offset):
                yield channel, label, float(self._cumulative[i]) + current[i]

    def totals(self, now: float) -> WindowTotals:
        """Sum the slices of the window that ends with the slice of ``now``."""
        last = self._slice_of(now)
        first = last - self._slices + 1
        rows = (self._ids >= first) & (self._ids <= last)
        records = self._ring_rows[rows].sum(axis=0)
        counts = self._ring_counts[rows].sum(axis=0)
        sums = self._ring_sums[rows].sum(axis=0)
        minimum = self._ring_min[rows].min(axis=0, initial=np.inf)
        maximum = self._ring_max[rows].max(axis=0, initial=-np.inf)
        codes, sizes = self._ring_codes[rows], self._ring_distinct[rows]
        current = [np.empty(0, dtype=np.int64)] * len(self.channels)
        if first <= self._slice <= last and self._rows:
            records += (self._rows, self._weight, self._weight2)
            counts += self._counts
            sums += (self._nulls, self._null_weight, self._null_weight2, self._sums, self._squares)
            minimum = np.minimum(minimum, self._min)
            maximum = np.maximum(maximum, self._max)
            current = self._distinct.codes()
        return WindowTotals(
            channels=self.channels,
            rows=int(records[0]),
            weight=float(records[1]),
            weight2=float(records[2]),
            counts=counts,
            nulls=sums[_NULLS],
            null_weight=sums[_NULL_WEIGHT],
            null_weight2=sums[_NULL_WEIGHT2],
            sums=sums[_SUMS],
            squares=sums[_SQUARES],
            minimum=minimum,
            maximum=maximum,
            distinct=tuple(count_distinct(codes[:, j], sizes[:, j], current[j]) for j in range(len(self.channels))),
        )
