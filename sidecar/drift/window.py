"""The streaming window: a ring of time slices of weighted per-bin counts and mergeable sums.

A :class:`Window` counts the values of a fixed list of channels (features, or
model outputs, or labels), each with its reference :class:`Distribution`.
Time is cut into slices of ``slice_seconds``, numbered ``floor(t /
slice_seconds)``; the window is the last ``slices`` of them, the current
partial slice included.

- **Counting is columnar.** :meth:`Window.add_block` takes a block of
  records, their numeric values as rows of values and their categorical
  values as rows of tuples; :meth:`Window.add_columns` takes a table as one
  array or sequence per channel. Either is counted in chunks of up to 2048
  rows, each with a handful of numpy calls: the numeric values as one row
  per channel, binned by comparing with each edge rank at once, one
  ``bincount`` for every bin (an integer one when the chunk's records share
  one weight), row sums for the moments. Per record that leaves the C-level
  copy of its values and one dict lookup per categorical value, about 1–3 µs
  for 20 features; a pure-Python loop over the values costs about 15–20 µs,
  and per-record numpy calls more (about 1 µs each). Callers therefore hand
  over blocks (:class:`DriftTracker` buffers records for that);
  :meth:`Window.add` counts one record, for tests and trickles.
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
    window.add_columns([np.array([41.0, np.nan])], [["FR", None]], np.ones(2))  # a table, a column per channel
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

__all__ = ["Channel", "Window", "WindowTotals", "as_number"]

Floats = npt.NDArray[np.float64]
_NEVER = np.iinfo(np.int64).min  # the slice number of a row never written
# Rows of the per-slice sums array, one value per channel each.
_NULLS, _NULL_WEIGHT, _NULL_WEIGHT2, _SUMS, _SQUARES = range(5)
_GRID_EDGES = 32
_NAMED_CAP = 1024
# Rows counted at once. A block's temporaries (a float per value, ~240 KiB
# for 15 channels) then stay in a core's cache and under glibc's mmap
# threshold: a 100,000-row table counted whole took 2.5x as long, and 4096-row
# chunks 1.3x, mostly in page faults of freshly mapped temporaries.
_CHUNK = 2048


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
        # Columns, to broadcast along the rows of a channel-major block.
        self._numeric_offsets = np.array([[self.channels[j].offset] for j in numeric], dtype=np.intp)
        self._numeric_shifts = np.array([[self.channels[j].shift] for j in numeric], dtype=np.float64)
        # Every numeric channel's edges in one edge rank × channels grid, padded
        # with +inf (no value is above it), to bin a block with one comparison
        # per rank. Past _GRID_EDGES ranks a searchsorted per channel is cheaper.
        widest = max((len(edges) for edges in self._numeric_edges), default=0)
        self._grid: Floats | None = None
        if widest <= _GRID_EDGES:
            self._grid = np.full((widest, len(numeric), 1), np.inf)
            for j, edges in enumerate(self._numeric_edges):
                self._grid[: len(edges), j, 0] = edges
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
        w = np.asarray(weights, dtype=np.float64)
        k = len(self.numeric_names)
        for i in range(0, len(w), _CHUNK):
            cut = slice(i, i + _CHUNK)
            n = len(w[cut])
            # Channel-major (one row per channel): numpy reduces along a row
            # many times faster than down a column.
            x = _float_matrix(numeric[cut], n, k).T.copy() if k else None
            self._count(x, zip(*categorical[cut], strict=True), w[cut], keys_only=False)

    def add_columns(
        self, numeric: Sequence[Floats], categorical: Sequence[Sequence[str | None]], weights: Floats
    ) -> None:
        """Count a table given column by column, as a batch job reads a data file.

        ``numeric`` holds one float array per numeric channel (in the order
        of :attr:`numeric_names`), NaN for a null; ``categorical`` one
        sequence of category keys per categorical channel, None for a null.
        What :meth:`add_block` reads from each value (a number's float, a
        category's name) is already done, so only the counting is left. It
        goes in chunks of :data:`_CHUNK` rows: numpy's passes over a chunk
        stay in the CPU cache, where over a whole 100,000-row table each pass
        would go to memory, at 2.5x the time.
        """
        n = len(weights)
        if len(numeric) != len(self.numeric_names) or len(categorical) != len(self.categorical_names):
            raise ValueError(
                f"add_columns needs {len(self.numeric_names)} numeric and {len(self.categorical_names)}"
                f" categorical columns, not {len(numeric)} and {len(categorical)}"
            )
        if any(len(column) != n for column in chain(numeric, categorical)):
            raise ValueError(f"add_columns needs every column {n} rows long, as the weights are")
        for i in range(0, n, _CHUNK):
            cut = slice(i, i + _CHUNK)
            x = np.stack([column[cut] for column in numeric]) if numeric else None
            self._count(x, [column[cut] for column in categorical], weights[cut], keys_only=True)

    def _count(self, x: Floats | None, columns: Iterable[Sequence[Any]], w: Floats, *, keys_only: bool) -> None:
        """Count a block: ``x`` has a row of numbers per numeric channel, ``columns`` a sequence per categorical one."""
        n = len(w)
        w2 = w * w
        self._rows += (n, w.sum(), w2.sum())
        # Each value's flat bin, channel after channel; a null's is the dump
        # cell past the last bin, which is counted and then thrown away.
        bins: list[npt.NDArray[np.intp]] = []
        if x is not None:
            bins.append(self._add_numeric(x, w, w2))
        if self._categorical:
            bins.append(self._add_categorical(columns, w, w2, keys_only=keys_only))
        flat = np.concatenate(bins) if len(bins) > 1 else bins[0]
        dump = len(self._counts)
        first = w[0]
        if (w == first).all():
            # One weight for the whole block, as random sampling and batch jobs
            # give: an integer count times the weight, 7x faster than weighing
            # every value.
            self._counts += first * np.bincount(flat, minlength=dump + 1)[:dump]
        else:
            self._counts += np.bincount(flat, weights=np.tile(w, len(flat) // n), minlength=dump + 1)[:dump]

    def _add_numeric(self, x: Floats, w: Floats, w2: Floats) -> npt.NDArray[np.intp]:
        """Sum a block's numeric values (``x``: one row per channel) and return their flat bins."""
        null = np.isnan(x)
        if self._grid is not None:
            # bisect_left's bin is the number of edges below the value: for
            # each edge rank, one comparison over every channel at once, added
            # up in bytes (a quarter of the time of adding intp). NaN compares
            # False everywhere; its bin is replaced by the dump below.
            found = np.zeros(x.shape, dtype=np.uint8)
            for edges in self._grid:
                found += x > edges
            bins = found + self._numeric_offsets
        else:
            bins = np.empty(x.shape, dtype=np.intp)
            for j, edges in enumerate(self._numeric_edges):
                bins[j] = np.searchsorted(edges, x[j], side="left") + self._numeric_offsets[j, 0]
        channels = self._numeric_index
        sums = self._sums
        nulls = bool(null.any())
        if nulls:
            bins[null] = len(self._counts)
            sums[_NULLS, channels] += np.count_nonzero(null, axis=1)
            sums[_NULL_WEIGHT, channels] += null @ w
            sums[_NULL_WEIGHT2, channels] += null @ w2
        # Huge values overflow to inf, and inf − inf makes NaN, as in plain
        # Python floats; a statistic of such a channel is then inf or NaN, not a crash.
        with np.errstate(over="ignore", invalid="ignore"):
            d = x - self._numeric_shifts
            if nulls:
                d[null] = 0.0
            sums[_SUMS, channels] += d @ w
            sums[_SQUARES, channels] += (d * d) @ w
        # fmin/fmax skip NaN, so an all-null channel leaves the bound as it was.
        self._min[channels] = np.fmin(self._min[channels], np.fmin.reduce(x, axis=1, initial=np.inf))
        self._max[channels] = np.fmax(self._max[channels], np.fmax.reduce(x, axis=1, initial=-np.inf))
        for j, seen in enumerate(self._numeric_seen):
            if len(seen) < CAP:
                _remember_numbers(seen, x[j][~null[j]] if nulls else x[j])
        return bins.ravel()

    def _add_categorical(
        self, columns: Iterable[Sequence[Any]], w: Floats, w2: Floats, *, keys_only: bool
    ) -> npt.NDArray[np.intp]:
        """Sum a block's categorical values (one sequence per channel) and return their flat bins."""
        n = len(w)
        dump = len(self._counts)
        ids = np.empty((len(self._categorical), n), dtype=np.intp)  # one row per channel, one column per record
        for j, ((seen, index, unseen, named), values) in enumerate(zip(self._categorical, columns, strict=True)):
            keys: Sequence[Any] = values
            try:
                # The common case, in one C-level pass: every value a known category.
                # A miss gives None, which fromiter refuses: then the second look.
                ids[j] = np.fromiter(map(index.get, values), dtype=np.intp, count=n)
            except TypeError:  # a null, an unseen string, a non-string, an unhashable value
                if keys_only:
                    # Strings and None only: no value needs naming, so one comprehension does it.
                    ids[j] = [dump if v is None else index.get(v, unseen) for v in values]
                else:
                    keys = list(values)
                    found = [dump] * n  # the dump: a null
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
        null = ids == dump
        if null.any():
            channels, sums = self._categorical_index, self._sums
            sums[_NULLS, channels] += np.count_nonzero(null, axis=1)
            sums[_NULL_WEIGHT, channels] += null @ w
            sums[_NULL_WEIGHT2, channels] += null @ w2
        return ids.ravel()

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
        return np.array([[as_number(v) for v in row] for row in rows], dtype=np.float64).reshape(n, k)


def as_number(value: Any) -> float:
    """A value as a numeric channel reads it: its float(), or NaN (a null) for None and what is not a number."""
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


def _remember_numbers(seen: set[Any], values: Floats) -> None:
    """Add a column's non-null numbers to a slice's distinct set.

    A large block (a batch job's) is sampled first: when its first values
    alone fill the set, the rest cannot change the count (:data:`CAP`, "at
    least"), and sorting the whole column for np.unique is skipped.
    """
    if values.size > 4 * CAP:
        _remember(seen, np.unique(values[: 4 * CAP]).tolist())
        if len(seen) >= CAP:
            return
    _remember(seen, np.unique(values).tolist())


def _remember(seen: set[Any], values: Iterable[Any]) -> None:
    """Add ``values`` to a slice's distinct set, which stops growing at :data:`CAP`."""
    room = CAP - len(seen)
    new = (values if isinstance(values, set) else set(values)) - seen
    if len(new) <= room:
        seen |= new
    else:
        seen.update(list(new)[:room])
