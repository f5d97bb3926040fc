"""A mergeable quantile sketch: fixed memory, and a rank error it can state.

Columns longer than the builder's exact limit go through this sketch instead
of being kept whole. It is a stack of *compactors* (Manku, Rajagopalan and
Lindsay's sketch; KLL uses the same compaction step with shrinking
capacities). A value stored at level ``h`` stands for ``2**h`` input values.
When a level holds ``capacity`` values or more it is compacted: sorted, and
every other value moves up one level, where it weighs twice as much.

Error bound. Take any point ``x``. If ``r`` of a compacted level's values are
``<= x`` (or ``< x``), then ``ceil(r/2)`` or ``floor(r/2)`` of the promoted
values are, so the weighted rank of ``x`` moves by at most ``2**h``. The sketch
adds ``2**h`` to its error ``E`` at every compaction, so ``E`` is a
deterministic worst case, not a probability: for every ``x`` the sketch's
count of values ``<= x`` is within ``E`` of the true count. Each level
compacts at most ``n / (capacity * 2**h)`` times, hence ``E <= n * L /
capacity`` for ``L`` levels: with the default capacity (32,768) and 10 million
values, ``L = 9`` and ``E / n <= 0.03 %``.

For a quantile ``q`` the sketch answers a stored value ``v`` with
``#{x < v} < q*n + E`` and ``#{x <= v} >= q*n - E``; :meth:`rank_error` is
``E / n``. The share of values in a bin, a difference of two counts, is within
``2 * E / n``.

Compaction offsets alternate per level so that a level's errors tend to
cancel; there is no randomness, so the same values in the same order always
give the same answers (and a rebuilt profile the same content hash).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["DEFAULT_CAPACITY", "QuantileSketch"]

# 32k float64 per level (256 KiB): about 2.5 MiB per column at 10 million
# values, for a worst-case rank error of 0.03 %.
DEFAULT_CAPACITY = 32_768


class QuantileSketch:
    """Approximate quantiles of a stream of floats, mergeable across chunks and processes.

    Usage::

        sketch = QuantileSketch()
        for chunk in chunks:
            sketch.update(chunk)
        sketch.quantiles([0.1, 0.5, 0.9])  # stored values, rank within sketch.rank_error() of q
        sketch.cdf([0.0])                  # share of values <= 0.0, within the same bound
        sketch.merge(other_sketch)         # the bound still holds for the union

    NaN must be filtered out before :meth:`update`.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even number >= 2, not {capacity}")
        self.capacity = capacity
        self.count = 0
        self._levels: list[list[NDArray[np.float64]]] = []
        self._sizes: list[int] = []
        self._offsets: list[int] = []
        self._error = 0  # worst-case rank error so far, counted in input values

    def update(self, values: ArrayLike) -> None:
        array = np.array(values, dtype=np.float64)  # a copy: the caller may reuse its buffer
        if array.size:
            self.count += array.size
            self._push(0, array.ravel())

    def merge(self, other: QuantileSketch) -> None:
        """Add another sketch's values (and its error) to this one."""
        if other.capacity != self.capacity:
            raise ValueError(f"cannot merge sketches of capacity {self.capacity} and {other.capacity}")
        self.count += other.count
        self._error += other._error
        for level, arrays in enumerate(other._levels):
            if arrays:
                self._push(level, np.concatenate(arrays))

    def rank_error(self) -> float:
        """The worst-case rank error of :meth:`quantiles` and :meth:`cdf`, as a share of the count."""
        return self._error / self.count if self.count else 0.0

    def quantiles(self, qs: Sequence[float]) -> NDArray[np.float64]:
        """For each q, the first stored value whose weighted rank reaches ``q * count``."""
        if not self.count:
            raise ValueError("quantiles of an empty sketch")
        values, cumulative = self._weighted()
        ranks = np.asarray(qs, dtype=np.float64) * self.count
        index = np.minimum(np.searchsorted(cumulative, ranks, side="left"), values.size - 1)
        result: NDArray[np.float64] = values[index]
        return result

    def cdf(self, points: Sequence[float]) -> NDArray[np.float64]:
        """The estimated share of values ``<= p`` for each point (``bin_of``'s ``le`` convention)."""
        if not self.count:
            raise ValueError("cdf of an empty sketch")
        values, cumulative = self._weighted()
        index = np.searchsorted(values, np.asarray(points, dtype=np.float64), side="right")
        below = np.concatenate(([0], cumulative))[index]
        result: NDArray[np.float64] = below / self.count
        return result

    def _weighted(self) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        parts = [(np.concatenate(arrays), 1 << level) for level, arrays in enumerate(self._levels) if arrays]
        values = np.concatenate([part for part, _ in parts])
        weights = np.concatenate([np.full(part.size, weight, dtype=np.int64) for part, weight in parts])
        order = np.argsort(values, kind="stable")
        return values[order], np.cumsum(weights[order])

    def _push(self, level: int, values: NDArray[np.float64]) -> None:
        if level == len(self._levels):
            self._levels.append([])
            self._sizes.append(0)
            self._offsets.append(0)
        self._levels[level].append(values)
        self._sizes[level] += values.size
        if self._sizes[level] >= self.capacity:
            self._compact(level)

    def _compact(self, level: int) -> None:
        buffer = np.sort(np.concatenate(self._levels[level]))
        # An odd value out stays where it is, at its own weight: that costs no error.
        kept = buffer[buffer.size - buffer.size % 2 :]
        offset = self._offsets[level]
        self._offsets[level] ^= 1
        self._levels[level] = [kept] if kept.size else []
        self._sizes[level] = kept.size
        self._error += 1 << level
        promoted = buffer[offset : buffer.size - kept.size : 2].copy()  # a copy frees the sorted buffer
        self._push(level + 1, promoted)
