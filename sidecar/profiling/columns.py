"""One column's running profile, and the rule that makes it numeric or categorical.

Inference rule (``--categorical`` and ``--numeric`` override it). "Text" is
any non-null value that is not a number: a CSV cell ``float()`` rejects, a
JSON string, boolean, list or object, a Parquet string, date or boolean.

==========================================================  ===========
non-null values                                             kind
==========================================================  ===========
none at all                                                 numeric (one open bin)
only text                                                   categorical
only numbers that look like codes: integer-valued, >= 0,    categorical
at most :data:`CODE_MAX_DISTINCT` distinct (0/1 flags,
class ids, 1-5 ratings)
only numbers, otherwise                                     numeric
numbers and text, text at least half, or the numbers        categorical
look like codes
numbers and text, numbers the majority and not codes        numeric; the text
                                                            counts as null
==========================================================  ===========

The last row is for numeric columns with missing-value markers (``?``,
``unknown``); the build warns about it and names ``--categorical``.

Numeric bins. While a column has at most ``exact_limit`` numbers they are
all kept and the edges are ``np.quantile(values, i / bins)`` for
``i = 1 .. bins-1``; past it they go to a :class:`QuantileSketch` whose
worst-case rank error is reported per column. Edges are de-duplicated, so
heavy ties give fewer bins; the reported error is in
``source["quantile_rank_error"]``. Ratios count values with ``bin_of``'s rule (a
value belongs to the first bin whose upper edge is ``>=`` it): exactly for
kept values, within twice the sketch's rank error otherwise.

Categories. The most frequent ``max_categories`` keys (ties by key),
numbers named by :func:`sidecar.reference.category_key` (so ``1.0`` is
``"1"``); the rest fold into the OTHER bucket's ratio. Counts are exact
below 20,000 distinct keys; past that they are Misra-Gries counts, each
share low by at most ``2 / 20,000`` (the bound is reported per column in
``source["category_share_error"]``). Numbers are counted exactly only up to
``CARDINALITY_CAP`` distinct values: a text-majority column with more
distinct numbers than that puts its numbers in OTHER, with a warning.

Stats. ``mean``/``std`` (population, ``ddof=0``)/``min``/``max`` describe the
numbers; a categorical column has them only when all its values are numbers.
``cardinality`` is exact up to :data:`sidecar.reference.CARDINALITY_CAP`,
then that cap.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from sidecar.profiling.counts import KeyCounts, NumberCounts
from sidecar.profiling.readers import Column
from sidecar.profiling.sketch import QuantileSketch
from sidecar.reference import CARDINALITY_CAP, OTHER, Distribution, Kind, Stats, category_key

__all__ = ["CODE_MAX_DISTINCT", "EXACT_LIMIT", "ColumnProfiler", "Finished", "infer_kind"]

CODE_MAX_DISTINCT = 20
EXACT_LIMIT = 1_000_000  # numbers kept per column for exact quantiles (8 MB of float64)


def infer_kind(*, numbers: int, texts: int, code_like: bool) -> Kind:
    """The inference rule of the table above, from a column's counts of numbers and text."""
    if texts == 0:
        return "categorical" if numbers and code_like else "numeric"
    if numbers == 0 or texts >= numbers or code_like:
        return "categorical"
    return "numeric"


@dataclass(frozen=True)
class Finished:
    distribution: Distribution
    quantile_error: float | None = None  # set when the edges come from the sketch
    category_error: float | None = None  # set when category counts were cut (Misra-Gries)
    warnings: tuple[str, ...] = ()


@dataclass
class _Moments:
    """Count, mean, sum of squared deviations, min, max: merged chunk by chunk (Chan et al.)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    integral: bool = True

    def add(self, numbers: NDArray[np.float64]) -> None:
        n = numbers.size
        mean = float(numbers.mean())
        m2 = float(np.square(numbers - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.low = min(self.low, float(numbers.min()))
        self.high = max(self.high, float(numbers.max()))
        if self.integral:
            self.integral = bool(np.all(np.floor(numbers) == numbers))


@dataclass
class ColumnProfiler:
    """Accumulates one column chunk by chunk; :meth:`finish` makes its :class:`Distribution`.

    Usage::

        column = ColumnProfiler("age")
        column.add(Column(np.array([31.0, 45.0, np.nan])))
        column.finish(bins=10, max_categories=50).distribution.stats.null_share  # 1/3
    """

    name: str
    forced: Kind | None = None
    exact_limit: int = EXACT_LIMIT
    rows: int = 0
    texts: int = 0
    moments: _Moments = field(default_factory=_Moments)
    numbers: NumberCounts = field(default_factory=lambda: NumberCounts(CARDINALITY_CAP))
    keys: KeyCounts = field(default_factory=KeyCounts)
    _kept: list[NDArray[np.float64]] = field(default_factory=list)
    _sketch: QuantileSketch | None = None

    def add(self, column: Column) -> None:
        self.rows += column.numbers.size
        if column.keys is not None:
            counts = {key: count for key, count in Counter(column.keys).items() if key is not None}
            self.texts += sum(counts.values())
            self.keys.add(counts)
        values = column.numbers[np.isfinite(column.numbers)]
        if values.size:
            self._add_numbers(values)

    def add_nulls(self, rows: int) -> None:
        """Rows in which the column does not appear (a JSON Lines key missing from a chunk)."""
        self.rows += rows

    def _add_numbers(self, values: NDArray[np.float64]) -> None:
        self.moments.add(values)
        if self.forced == "categorical":
            distinct, counts = np.unique(values, return_counts=True)
            self.keys.add({category_key(v): c for v, c in zip(distinct.tolist(), counts.tolist(), strict=True)})
            return
        self.numbers.add(values)
        if self._sketch is not None:
            self._sketch.update(values)
        elif self.moments.count <= self.exact_limit:
            self._kept.append(values)
        else:  # past the exact limit: everything kept so far goes into the sketch, and is freed
            self._sketch = QuantileSketch()
            for kept in (*self._kept, values):
                self._sketch.update(kept)
            self._kept.clear()

    @property
    def code_like(self) -> bool:
        m = self.moments
        return m.count > 0 and m.integral and m.low >= 0 and self.numbers.distinct <= CODE_MAX_DISTINCT

    def kind(self) -> Kind:
        if self.forced is not None:
            return self.forced
        return infer_kind(numbers=self.moments.count, texts=self.texts, code_like=self.code_like)

    def finish(self, *, bins: int, max_categories: int) -> Finished:
        if self.kind() == "numeric":
            return self._numeric(bins)
        return self._categorical(max_categories)

    def _stats(self, count: int, *, with_moments: bool) -> Stats:
        m = self.moments
        moments = with_moments and m.count > 0
        return Stats(
            count=count,
            mean=m.mean if moments else None,
            std=math.sqrt(m.m2 / m.count) if moments else None,
            min=m.low if moments else None,
            max=m.high if moments else None,
            null_share=(self.rows - count) / self.rows if self.rows else 0.0,
            cardinality=min(self._cardinality(count), CARDINALITY_CAP),
        )

    def _cardinality(self, count: int) -> int:
        if self.kind() == "numeric":
            return self.numbers.distinct
        if self.numbers.saturated or self.keys.peak > CARDINALITY_CAP or self.keys.undercount:
            return CARDINALITY_CAP
        return len(self._category_counts())

    def _numeric(self, bins: int) -> Finished:
        stats = self._stats(self.moments.count, with_moments=True)
        warnings: list[str] = []
        if self.texts:
            hint = "" if self.forced else f"; pass --categorical {self.name} to keep them as categories"
            warnings.append(
                f"column {self.name!r}: {self.texts} text values among {self.moments.count} numbers were counted"
                f" as nulls{hint}"
            )
        quantiles = np.arange(1, bins) / bins
        if self.moments.count == 0:
            warnings.append(f"column {self.name!r} has no non-null values")
            return Finished(Distribution.numeric(edges=(), ratios=(1.0,), stats=stats), warnings=tuple(warnings))
        if self._sketch is None:
            values = np.concatenate(self._kept)
            edges = np.unique(np.quantile(values, quantiles)) if bins > 1 else np.empty(0)
            counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)
            ratios = counts / values.size
            error = None
        else:
            edges = np.unique(self._sketch.quantiles(quantiles.tolist())) if bins > 1 else np.empty(0)
            below = np.concatenate((self._sketch.cdf(edges.tolist()), [1.0]))
            ratios = np.diff(below, prepend=0.0)
            error = self._sketch.rank_error()
        distribution = Distribution.numeric(edges=edges.tolist(), ratios=ratios.tolist(), stats=stats)
        return Finished(distribution, quantile_error=error, warnings=tuple(warnings))

    def _category_counts(self) -> dict[str, int]:
        counts = dict(self.keys.counts)
        for value, count in self.numbers.items():
            key = category_key(value)
            counts[key] = counts.get(key, 0) + count
        return counts

    def _categorical(self, max_categories: int) -> Finished:
        total = self.moments.count + self.texts
        stats = self._stats(total, with_moments=self.texts == 0)
        counts = self._category_counts()
        counts.pop(OTHER, None)  # a real category spelled like the bucket can only go in the bucket
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_categories]
        warnings: list[str] = []
        if total == 0:
            warnings.append(f"column {self.name!r} has no non-null values")
            return Finished(
                Distribution.categorical(categories=(), ratios=(1.0,), stats=stats), warnings=tuple(warnings)
            )
        if self.numbers.saturated and self.forced is None:
            warnings.append(
                f"column {self.name!r}: more than {CARDINALITY_CAP} distinct numbers among its text; the numbers"
                " fall in the other bucket"
            )
        ratios = [count / total for _, count in top]
        other = max(total - sum(count for _, count in top), 0) / total
        distribution = Distribution.categorical(
            categories=[key for key, _ in top], ratios=[*ratios, other], stats=stats
        )
        error = self.keys.undercount / total if self.keys.undercount else None
        return Finished(distribution, category_error=error, warnings=tuple(warnings))
