"""Value counts in bounded memory: numbers until there are too many, category keys always.

:class:`NumberCounts` keeps exact counts of a column's distinct numbers and
gives up (``saturated``) past ``cap`` distinct values: a column with that many
distinct numbers is continuous, and its counts would only cost memory.

:class:`KeyCounts` keeps category keys with the Misra-Gries algorithm. Below
``capacity`` distinct keys every count is exact. Past it, the counts are cut
back: the ``capacity // 2 + 1``-th largest count ``c`` is subtracted from
every key and the keys left at zero or less are dropped. Each cut removes at
least ``c * (capacity // 2 + 1)`` from the total, so all the cuts together
take at most ``2 * n / capacity`` from any one key: a reported share is low by
at most ``undercount / n <= 2 / capacity`` (0.01 % at the default 20,000).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = ["KEY_CAPACITY", "KeyCounts", "NumberCounts"]

# Twice reference.CARDINALITY_CAP, so a cut only ever happens to a column whose
# cardinality is already known to be past the cap.
KEY_CAPACITY = 20_000


class NumberCounts:
    """Exact counts of distinct numbers, up to ``cap`` of them.

    Usage::

        counts = NumberCounts(cap=10_000)
        counts.add(np.array([1.0, 2.0, 2.0]))
        counts.distinct, counts.saturated  # 2, False
        dict(counts.items())               # {1.0: 1, 2.0: 2}
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.saturated = False
        self._values: NDArray[np.float64] = np.empty(0)
        self._counts: NDArray[np.int64] = np.empty(0, dtype=np.int64)

    @property
    def distinct(self) -> int:
        """Distinct values seen, or ``cap`` once there were more."""
        return self.cap if self.saturated else int(self._values.size)

    def add(self, numbers: NDArray[np.float64]) -> None:
        if self.saturated or not numbers.size:
            return
        values, counts = np.unique(numbers, return_counts=True)
        if self._values.size and values.size <= self.cap:
            merged = np.concatenate((self._values, values))
            order = np.argsort(merged, kind="stable")
            merged = merged[order]
            starts = np.flatnonzero(np.concatenate(([True], merged[1:] != merged[:-1])))
            values = merged[starts]
            counts = np.add.reduceat(np.concatenate((self._counts, counts))[order], starts)
        if values.size > self.cap:
            self.saturated = True
            self._values, self._counts = np.empty(0), np.empty(0, dtype=np.int64)
            return
        self._values, self._counts = values, counts.astype(np.int64)

    def items(self) -> list[tuple[float, int]]:
        """``(value, count)`` pairs in ascending value order; empty once saturated."""
        return list(zip(self._values.tolist(), self._counts.tolist(), strict=True))


class KeyCounts:
    """Counts of category keys in bounded memory (Misra-Gries; exact below ``capacity`` keys).

    Usage::

        keys = KeyCounts()
        keys.add({"DE": 3, "FR": 1})
        keys.counts       # {"DE": 3, "FR": 1}
        keys.undercount   # 0: every count is exact
    """

    def __init__(self, capacity: int = KEY_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2, not {capacity}")
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self.undercount = 0  # how much any count may be below the truth
        self.peak = 0  # most distinct keys held at once: the cardinality is at least this

    def add(self, counts: Mapping[str, int]) -> None:
        held = self.counts
        for key, count in counts.items():
            held[key] = held.get(key, 0) + count
        self.peak = max(self.peak, len(held))
        if len(held) > self.capacity:
            self._cut()

    def _cut(self) -> None:
        cut = sorted(self.counts.values(), reverse=True)[self.capacity // 2]
        self.counts = {key: count - cut for key, count in self.counts.items() if count > cut}
        self.undercount += cut
