"""The batch screen: proves most of a batch clean column by column, in C-level loops.

Checking a record one value at a time costs over 1,000 machine instructions
per value in the interpreter, and at a sample rate of 1 that work runs on the
proxy's event loop. Most records are clean, so :class:`Screen` reads a batch
as columns (one ``itemgetter`` call per record, then ``zip``) and proves whole
columns clean at once:

- **numeric**: the column is packed as doubles (``struct``, which refuses
  every JSON value but a number: strings, nulls, lists, objects) and
  compared with the bounds by numpy;
- **categorical**: ``allowed.issuperset(column)``, the same ``in`` as the
  per-value check; without a vocabulary, every value's type must be ``str``;
- **untyped**: no value may be null;
- **unexpected names**: a record holding every expected name holds no other
  when its length is the number of expected names.

The screen only *flags*: a flagged value (or, for a record lacking an
expected name, the whole record) goes through :class:`~.checks.Checker`'s
exact per-value logic, which decides whether it violates anything. So a
flag may be spurious (a numeric string in range, a null where nulls are
allowed, an integer beyond 2**53) but a value that passes is clean by the
same comparison the per-value check makes: packing is exact for every
float, for bools (0 and 1, as they compare) and for ints within ±2**53, and
the bounds the packed values are compared with are clipped to that range, so
a larger int is always flagged. (Records come from JSON. A non-JSON number
with ``__float__``, a ``Decimal`` say, would be packed rounded where the
per-value check compares it exactly.)
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from itertools import compress, starmap
from operator import itemgetter, not_
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["Screen"]

# Ints up to this magnitude are exact as doubles; beyond it a value is flagged rather than rounded.
_EXACT: Final = float(2**53 - 1)
_STR: Final = frozenset({str})
_FIRST: Final = itemgetter(0)
Floats = npt.NDArray[np.float64]


class Screen:
    """Flag the values of a batch that might violate a check; all others are clean.

    ``numeric`` holds, per numeric feature, the range ``(floor, high)`` a clean
    value lies in, ``categorical`` per categorical feature the allowed
    categories (None: any string). Positions number the features in the order
    ``names``, numeric then categorical then untyped ones; position
    ``len(names)`` stands for the record's unexpected names.

    Usage::

        screen = Screen(["age", "country"], [(0.0, 130.0)], [frozenset({"DE"})], check_unexpected=True)
        screen.flags([{"age": 40, "country": "DE"}, {"age": 200, "country": "DE", "x": 1}])
        # [(1, [0, 2])]: record 1, its age and its unexpected names
    """

    __slots__ = ("names", "_get", "_floors", "_highs", "_bounds", "_allowed", "_check_unexpected", "_block")

    def __init__(
        self,
        names: Sequence[str],
        numeric: Sequence[tuple[float, float]],
        categorical: Sequence[frozenset[str] | None],
        *,
        check_unexpected: bool,
    ) -> None:
        self.names = tuple(names)
        self._get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = _row_getter(self.names)
        self._bounds = tuple(numeric)
        self._floors = np.array([max(floor, -_EXACT) for floor, _ in numeric], dtype=np.float64)
        self._highs = np.array([min(high, _EXACT) for _, high in numeric], dtype=np.float64)
        self._allowed = tuple(categorical)
        self._check_unexpected = check_unexpected
        # For the last batch size: a packer of one column, and each bound repeated per record.
        self._block: tuple[int, Callable[..., bytes], Floats, Floats] = (0, struct.pack, self._floors, self._highs)

    def flags(self, batch: Sequence[Mapping[str, Any]]) -> list[tuple[int, list[int] | None]]:
        """``(record index, flagged positions)`` in record order, positions ascending.

        The positions are None for a record that lacks an expected name: it
        must be checked whole. Records not listed are clean.
        """
        get = self._get
        whole: list[int] = []
        try:
            rows = list(map(get, batch))
            present: Sequence[Mapping[str, Any]] = batch
            index: list[int] | None = None
        except KeyError:
            # Some record lacks a name: screen the others, and check that one whole.
            rows, index, kept = [], [], []
            for i, features in enumerate(batch):
                try:
                    rows.append(get(features))
                except KeyError:
                    whole.append(i)
                    continue
                index.append(i)
                kept.append(features)
            present = kept
        marks: defaultdict[int, list[int]] = defaultdict(list)
        if rows:
            self._screen(rows, present, marks)
            if not marks and not whole:
                return []  # the common case: a clean batch
        flagged: list[tuple[int, list[int] | None]] = [
            (r if index is None else index[r], sorted(positions)) for r, positions in marks.items()
        ]
        if whole:
            flagged.extend((i, None) for i in whole)
        flagged.sort(key=_FIRST)
        return flagged

    def _screen(
        self, rows: list[tuple[Any, ...]], present: Sequence[Mapping[str, Any]], marks: defaultdict[int, list[int]]
    ) -> None:
        count = len(self.names)
        columns = list(zip(*rows, strict=True))
        numeric = len(self._bounds)
        if numeric:
            self._screen_numeric(columns[:numeric], len(rows), marks)
        for j, allowed in enumerate(self._allowed, numeric):
            # The clean case inline: a function call per column would cost as much as the test.
            column = columns[j]
            try:
                if _STR.issuperset(map(type, column)) if allowed is None else allowed.issuperset(column):
                    continue
            except TypeError:  # an unhashable value: the slow way finds it
                pass
            _categorical_by_value(column, allowed, j, marks)
        for j in range(numeric + len(self._allowed), count):
            for r, value in enumerate(columns[j]):
                if value is None or (type(value) is float and value != value):
                    marks[r].append(j)
        if self._check_unexpected and max(map(len, present)) > count:
            for r, length in enumerate(map(len, present)):
                if length > count:
                    marks[r].append(count)

    def _screen_numeric(self, columns: list[tuple[Any, ...]], records: int, marks: defaultdict[int, list[int]]) -> None:
        size, pack, floors, highs = self._block
        if size != records:
            # Batches are mostly full, so one cached Struct and bounds serve nearly every call.
            # The bounds are repeated per record: numpy compares flat arrays at a third of
            # the cost of broadcasting a column of bounds.
            pack = struct.Struct(f"{records}d").pack
            floors, highs = np.repeat(self._floors, records), np.repeat(self._highs, records)
            self._block = (records, pack, floors, highs)
        which: list[int] | None = None
        try:
            block = b"".join(starmap(pack, columns))
        except (struct.error, OverflowError, TypeError, ValueError):
            # A value that is not a number (a string, a null, a list...): pack column by
            # column, and compare the column that refuses one value by value.
            parts, which = [], []
            for j, column in enumerate(columns):
                try:
                    parts.append(pack(*column))
                except (struct.error, OverflowError, TypeError, ValueError):
                    self._numeric_by_value(j, column, marks)
                    continue
                which.append(j)
            if not parts:
                return
            block = b"".join(parts)
            floors = floors.reshape(-1, records)[which].ravel()
            highs = highs.reshape(-1, records)[which].ravel()
        values = np.frombuffer(block, dtype=np.float64)
        clean = floors <= values  # False for NaN, as in the per-value check
        clean &= values <= highs
        if np.count_nonzero(clean) == len(clean):
            return
        for at in np.flatnonzero(~clean).tolist():
            j, r = divmod(at, records)
            marks[r].append(j if which is None else which[j])

    def _numeric_by_value(self, j: int, column: tuple[Any, ...], marks: defaultdict[int, list[int]]) -> None:
        floor, high = self._bounds[j]
        for r, value in enumerate(column):
            # Anything but a plain number is flagged without comparing it: a comparison that
            # raises TypeError costs several times a clean value's whole check.
            if (type(value) is float or type(value) is int) and floor <= value <= high:
                continue
            marks[r].append(j)


def _categorical_by_value(
    column: tuple[Any, ...], allowed: frozenset[str] | None, j: int, marks: defaultdict[int, list[int]]
) -> None:
    if allowed is None:
        for r, value in enumerate(column):
            if type(value) is not str:
                marks[r].append(j)
        return
    try:
        # Only the rows that are not in it, still in C.
        bad = list(compress(range(len(column)), map(not_, map(allowed.__contains__, column))))
    except TypeError:  # an unhashable value (a list, an object): one by one, and only strings tested
        bad = [r for r, value in enumerate(column) if type(value) is not str or value not in allowed]
    for r in bad:
        marks[r].append(j)


def _row_getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function from a record's features to the tuple of its values of ``names``; KeyError if one lacks."""
    if len(names) >= 2:
        return itemgetter(*names)
    if len(names) == 1:
        get_one = itemgetter(names[0])
        return lambda features: (get_one(features),)
    return lambda features: ()
