"""The streaming window: a ring of time slices of weighted per-bin counts and mergeable sums.

A :class:`Window` counts the values of a fixed list of channels (features, or
model outputs, or labels), each with its reference :class:`Distribution`.
Time is cut into slices of ``slice_seconds``, numbered ``floor(t /
slice_seconds)``; the window is the last ``slices`` of them, the current
partial slice included.

- **Counting is columnar.** :meth:`Window.add_block` takes a block of
  records, their numeric values as rows of a float matrix and their
  categorical values as rows of tuples, and counts the whole block with a
  handful of numpy calls per channel: ``searchsorted`` into the reference
  edges, one ``bincount`` for every numeric bin, column sums for the
  moments. Per record that leaves the C-level copy of its values into the
  matrix and one dict lookup per categorical value, about 1–2 µs for 20
  features in blocks of a few hundred records; a pure-Python loop over the
  values costs about 15–20 µs, and per-record numpy calls more (about 1 µs
  each). Callers therefore hand over blocks (:class:`DriftTracker` buffers
  records for that); :meth:`Window.add` counts one record, for tests and
  trickles.
- **The current slice** lives in numpy arrays that blocks add into.
- **Rotation.** When time reaches a new slice, :meth:`Window.advance` copies
  the current slice into its row of preallocated arrays (slices × bins and
  slices × channels) and zeroes it: O(bins) once per slice. A slice without
  traffic is never written, so it counts as zero.
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

How values are read, as :meth:`Distribution.bin_of` reads them: in a numeric
channel, a number, a bool or a numeric string counts through ``float()``;
None, NaN, and what is not a number (another string, a list, an object, an
integer beyond a double) fall in no bin and count as a null. In a
categorical channel, a string is its own category, None is a null, and
anything else is named by :func:`category_key`. Weights are the records'
``1/p``.

Usage::

    window = Window([("age", age_dist), ("country", country_dist)], slices=60, slice_seconds=60.0, now=clock())
    window.advance(clock())                                 # once per block
    window.add_block([(41.0,), (None,)], [("FR",), ("DE",)], [2.0, 1.0])  # numeric_names, categorical_names
    window.add([41.0, "FR"], weight=2.0)                    # one record, its values in window.feed_order
    totals = window.totals(clock())                         # copies, for the evaluator
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
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
_GRID_EDGES = 32
_NAMED_CAP = 1024


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
        # Blocks arrive split by kind: numeric channels as one float matrix, categorical ones as tuples.
        numeric = [j for j, c in enumerate(self.channels) if c.dist.kind == "numeric"]
        categorical = [j for j, c in enumerate(self.channels) if c.dist.kind == "categorical"]
        self.numeric_names = tuple(self.channels[j].name for j in numeric)
        self.categorical_names = tuple(self.channels[j].name for j in categorical)
        self.feed_order = self.numeric_names + self.categorical_names
        self._numeric_index = np.array(numeric, dtype=np.intp)
        self._numeric_edges = tuple(np.asarray(self.channels[j].dist.edges, dtype=np.float64) for j in numeric)
        self._numeric_offsets = np.array([self.channels[j].offset for j in numeric], dtype=np.intp)
        self._numeric_shifts = np.array([self.channels[j].shift for j in numeric], dtype=np.float64)
        # Every numeric channel's edges in one edge rank × channels grid, padded
        # with +inf (no value is above it), to bin a block with one comparison
        # per rank. Past _GRID_EDGES ranks a searchsorted per channel is cheaper.
        widest = max((len(edges) for edges in self._numeric_edges), default=0)
        self._grid: Floats | None = None
        if widest <= _GRID_EDGES:
            self._grid = np.full((widest, len(numeric)), np.inf)
            for j, edges in enumerate(self._numeric_edges):
                self._grid[: len(edges), j] = edges
        self._distinct = SliceDistinct([c.dist.kind == "numeric" for c in self.channels])
        seen = self._distinct.seen
        self._numeric_seen = tuple(seen[j] for j in numeric)
        self._categorical_index = np.array(categorical, dtype=np.intp)
        self._categorical: tuple[tuple[set[Any], dict[str, int], int, dict[tuple[type, Any], str]], ...] = tuple(
            (
                seen[j],
                {category: self.channels[j].offset + i for i, category in enumerate(self.channels[j].dist.categories)},
                self.channels[j].offset + len(self.channels[j].dist.categories),  # the unseen bucket
                {},  # category names of non-string values met so far: see _named
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
        # The current slice: added into in place, copied out at rotation.
        self._rows = np.zeros(3)  # records, weight, squared weight
        self._counts = np.zeros(bins)
        self._sums = np.zeros((5, width))
        self._min = np.full(width, np.inf)
        self._max = np.full(width, -np.inf)
        self._slice = self._slice_of(now)

    def _reset(self) -> None:
        self._rows.fill(0.0)
        self._counts.fill(0.0)
        self._sums.fill(0.0)
        self._min.fill(np.inf)
        self._max.fill(-np.inf)

    def _slice_of(self, t: float) -> int:
        return math.floor(t / self._slice_seconds)

    def advance(self, now: float) -> None:
        """Start the slice of ``now`` if it is a later one. A clock that steps back keeps counting into the current."""
        number = self._slice_of(now)
        if number > self._slice:
            if self._rows[0]:
                self._fold()
            self._slice = number

    def _fold(self) -> None:
        row = self._slice % self._slices
        self._ids[row] = self._slice
        self._ring_rows[row] = self._rows
        self._ring_counts[row] = self._counts
        self._cumulative += self._counts
        self._ring_sums[row] = self._sums
        self._ring_min[row] = self._min
        self._ring_max[row] = self._max
        self._distinct.fold(self._ring_codes[row], self._ring_distinct[row])
        self._reset()

    def add(self, values: Sequence[Any], weight: float) -> None:
        """Count one record: its values in :attr:`feed_order`, and its weight."""
        k = len(self.numeric_names)
        self.add_block([values[:k]], [values[k:]], [weight])

    def add_block(
        self,
        numeric: Sequence[Sequence[Any]],
        categorical: Sequence[Sequence[Any]],
        weights: Sequence[float] | Floats,
    ) -> None:
        """Count a block of records into the current slice.

        Record i has weight ``weights[i]``, numeric values ``numeric[i]`` in
        the order of :attr:`numeric_names` and categorical values
        ``categorical[i]`` in the order of :attr:`categorical_names`; a side
        with no channels may be an empty sequence. This is the hot path: a
        fixed number of numpy calls per block, whatever its size.
        """
        n = len(weights)
        if not n:
            return
        w = np.asarray(weights, dtype=np.float64)
        w2 = w * w
        self._rows += (n, w.sum(), w2.sum())
        bins: list[npt.NDArray[np.intp]] = []
        bin_weights: list[Floats] = []
        if self.numeric_names:
            self._add_numeric(_float_matrix(numeric, n, len(self.numeric_names)), w, w2, bins, bin_weights)
        if self._categorical:
            self._add_categorical(categorical, w, w2, bins, bin_weights)
        # One bincount for every bin of every channel; a null's entry has weight 0.
        self._counts += np.bincount(
            np.concatenate(bins), weights=np.concatenate(bin_weights), minlength=len(self._counts)
        )

    def _add_numeric(
        self, x: Floats, w: Floats, w2: Floats, bins: list[npt.NDArray[np.intp]], bin_weights: list[Floats]
    ) -> None:
        null = np.isnan(x)
        if self._grid is not None:
            # bisect_left's bin is the number of edges below the value: for
            # each edge rank, one comparison over every channel at once (numpy
            # reduces a short innermost axis slowly, so no 3-D count). NaN
            # compares False everywhere and lands in bin 0, with weight 0.
            found = np.zeros(x.shape, dtype=np.intp)
            for edges in self._grid:
                found += x > edges
        else:
            found = np.empty(x.shape, dtype=np.intp)
            for j, edges in enumerate(self._numeric_edges):
                found[:, j] = np.searchsorted(edges, x[:, j], side="left")
        found += self._numeric_offsets
        bins.append(found.ravel())
        bin_weights.append(np.where(null, 0.0, w[:, None]).ravel())
        channels = self._numeric_index
        sums = self._sums
        if null.any():
            sums[_NULLS, channels] += np.count_nonzero(null, axis=0)
            sums[_NULL_WEIGHT, channels] += w @ null
            sums[_NULL_WEIGHT2, channels] += w2 @ null
        # Huge values overflow to inf, and inf − inf makes NaN, as in plain
        # Python floats; a statistic of such a channel is then inf or NaN, not a crash.
        with np.errstate(over="ignore", invalid="ignore"):
            d = np.where(null, 0.0, x - self._numeric_shifts)
            sums[_SUMS, channels] += w @ d
            sums[_SQUARES, channels] += w @ (d * d)
        # fmin/fmax skip NaN, so an all-null column leaves the bound as it was.
        self._min[channels] = np.fmin(self._min[channels], np.fmin.reduce(x, axis=0, initial=np.inf))
        self._max[channels] = np.fmax(self._max[channels], np.fmax.reduce(x, axis=0, initial=-np.inf))
        for j, seen in enumerate(self._numeric_seen):
            if len(seen) < CAP:
                column = x[:, j]
                _remember(seen, np.unique(column[~null[:, j]]).tolist())

    def _add_categorical(
        self,
        rows: Sequence[Sequence[Any]],
        w: Floats,
        w2: Floats,
        bins: list[npt.NDArray[np.intp]],
        bin_weights: list[Floats],
    ) -> None:
        n = len(w)
        ids = np.empty((len(self._categorical), n), dtype=np.intp)  # one row per channel, one column per record
        columns = zip(*rows, strict=True)
        for j, ((seen, index, unseen, named), values) in enumerate(zip(self._categorical, columns, strict=True)):
            keys: Sequence[Any] = values
            try:
                # The common case, in one C-level pass: every value a known category.
                # A miss gives None, which fromiter refuses: then the second look.
                ids[j] = np.fromiter(map(index.get, values), dtype=np.intp, count=n)
            except TypeError:  # a null, an unseen string, a non-string, an unhashable value
                keys = list(values)
                found = [-1] * n  # -1: a null
                for i, v in enumerate(values):
                    if v is None:
                        continue
                    if type(v) is not str:
                        v = keys[i] = _named(named, v)
                    found[i] = index.get(v, unseen)
                ids[j] = found
            if len(seen) < CAP:
                distinct = set(keys)
                distinct.discard(None)
                _remember(seen, distinct)
        null = ids < 0
        if null.any():
            channels, sums = self._categorical_index, self._sums
            sums[_NULLS, channels] += np.count_nonzero(null, axis=1)
            sums[_NULL_WEIGHT, channels] += null @ w
            sums[_NULL_WEIGHT2, channels] += null @ w2
            ids[null] = 0
            bin_weights.append(np.where(null, 0.0, w).ravel())
        else:
            bin_weights.append(np.tile(w, len(self._categorical)))
        bins.append(ids.ravel())

    def observations(self) -> Iterator[tuple[Channel, str, float]]:
        """Weighted observations per bin since start, monotonic: ``(channel, bin label, total)``."""
        totals = (self._cumulative + self._counts).tolist()
        for channel in self.channels:
            for i, label in enumerate(channel.dist.labels, start=channel.offset):
                yield channel, label, totals[i]

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
        if first <= self._slice <= last and self._rows[0]:
            records += self._rows
            counts += self._counts
            sums += self._sums
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


def _float_matrix(rows: Sequence[Sequence[Any]], n: int, k: int) -> Floats:
    """Rows of values as an n × k float matrix, NaN for whatever is not a number."""
    try:
        # One C-level pass over the flattened rows (twice as fast as np.array on
        # the tuples); numpy reads None as NaN, and numbers, bools and numeric
        # strings as float() does.
        return np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=n * k).reshape(n, k)
    except (TypeError, ValueError, OverflowError):
        # Some value is not a number: value by value.
        return np.array([[_float(v) for v in row] for row in rows], dtype=np.float64).reshape(n, k)


def _float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):  # not a number: no bin, like a null
        return math.nan


def _named(named: dict[tuple[type, Any], str], value: Any) -> str:
    """The category name of a non-string value, remembered: numbers coded as categories recur on every record.

    Keyed by type as well as value, since 1, 1.0 and True are one key to a
    dict but "1", "1" and "true" as categories. Unhashable values and NaN
    (never equal to itself) are named afresh each time, and the memory stops
    growing at _NAMED_CAP names.
    """
    key = (type(value), value)
    try:
        return named[key]
    except KeyError:
        name = _category(value)
        if len(named) < _NAMED_CAP and value == value:
            named[key] = name
        return name
    except TypeError:  # unhashable: a list or an object
        return _category(value)


def _category(value: Any) -> str:
    try:
        return category_key(value)  # 1 and 1.0 are one category, as in Distribution.bin_of
    except TypeError:  # what JSON cannot name (an integer beyond 64 bits) is no category
        return repr(value)


def _remember(seen: set[Any], values: Iterable[Any]) -> None:
    """Add ``values`` to a slice's distinct set, which stops growing at :data:`CAP`."""
    room = CAP - len(seen)
    new = (values if isinstance(values, set) else set(values)) - seen
    if len(new) <= room:
        seen |= new
    else:
        seen.update(list(new)[:room])
