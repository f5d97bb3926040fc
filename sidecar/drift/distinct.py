"""Distinct values in bounded memory: exact up to a cap per slice, "at least the cap" beyond.

Each time slice keeps a set of up to :data:`CAP` distinct non-null values per
channel; when a slice's set is full it stops growing. At rotation the set is
stored as 64-bit codes in a row of a preallocated array: a number's own bits
(``-0.0`` made ``0.0``), a category's string hash. The window's count is the
number of distinct codes over its slices:

- no slice of the window filled up: the count is exact (numbers cannot
  collide, unlike their Python hashes, which give -1 and -2 the same; 64-bit
  string hashes collide with negligible odds);
- some slice filled up: the count is CAP, flagged ``exact=False``: there are
  at least that many (a continuous feature is like that within seconds).

The hot loop pays one length test per value, and one set insertion while the
set is not full, so a feature with few values (a category, a flag) or many
(a measurement) both cost little. String hashes are salted per process, so
the codes never leave it.

Usage::

    distinct = SliceDistinct(numeric=(False, True))
    seen = distinct.seen[0]
    if len(seen) < CAP:
        seen.add("FR")                       # the window's hot loop inlines this
    distinct.fold(codes[row], sizes[row])    # at slice rotation
    count_distinct(codes[rows, 0], sizes[rows, 0], distinct.codes()[0])  # (count, exact)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CAP", "SliceDistinct", "count_distinct"]

CAP = 128

Codes = npt.NDArray[np.int64]
Sizes = npt.NDArray[np.int64]


class SliceDistinct:
    """The distinct values of each channel in the current slice, at most :data:`CAP` each.

    ``numeric[j]`` says whether channel j's values are floats (else strings).
    """

    def __init__(self, numeric: Sequence[bool]) -> None:
        self._numeric = tuple(numeric)
        # The sets live as long as the window: the hot loop holds them, and fold empties them.
        self.seen: tuple[set[Any], ...] = tuple(set() for _ in self._numeric)

    def codes(self) -> list[Codes]:
        """Each channel's values as 64-bit codes."""
        return [self._codes(j) for j in range(len(self.seen))]

    def _codes(self, j: int) -> Codes:
        seen = self.seen[j]
        if self._numeric[j]:
            return (np.fromiter(seen, dtype=np.float64, count=len(seen)) + 0.0).view(np.int64)
        return np.fromiter(map(hash, seen), dtype=np.int64, count=len(seen))

    def fold(self, codes: Codes, sizes: Sizes) -> None:
        """Write the codes into ``codes[j, :sizes[j]]`` (shape channels × CAP), then start empty."""
        for j, seen in enumerate(self.seen):
            sizes[j] = len(seen)
            codes[j, : len(seen)] = self._codes(j)
            seen.clear()


def count_distinct(codes: Codes, sizes: Sizes, current: Codes) -> tuple[int, bool]:
    """``(count, exact)`` for one channel: its folded slices (rows × CAP, ``sizes`` used) and the current slice."""
    if len(current) >= CAP or bool((sizes >= CAP).any()):
        return CAP, False
    used = np.arange(CAP) < sizes[:, None]
    ordered = np.sort(np.concatenate((codes[used], current)))
    # Distinct values of a sorted array: its first, and every change. (np.unique is slower here.)
    return int(ordered.size and 1 + np.count_nonzero(ordered[1:] != ordered[:-1])), True
