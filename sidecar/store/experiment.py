"""An experiment's side of the store: business outcomes in, a metric's sums per arm out.

Nothing here speaks SQL: both backends match and store outcomes with these
rules, and return their sums in these values.

**Outcomes.** A business outcome (``POST /api/v1/outcomes``) is one value of
one metric, keyed by a request (its id and row) or by an assignment unit.
:func:`encode_outcome` checks an item; :func:`match_request` and
:func:`match_unit` decide, from the stored predictions, which arm it joins:

- by request: the prediction with that id and row (``row`` None: row 0 of a
  single-row request, as for labels), if its variant is an arm of the
  experiment; its arm and unit are the outcome's;
- by unit: the unit's predictions in the experiment's arms; the arm of its
  first one (a unit stays in one arm unless the weights changed, and then it
  is counted where it started), and its latest one's time;
- ``unmatched`` otherwise, not stored: the caller may post again.

The first outcome of a key wins, as the first label does: the same
(experiment, metric, request id and row | unit) posted again is a
``duplicate`` and changes nothing, across replicas on PostgreSQL.

**Eviction.** An outcome lives as long as the prediction it joined: each
keeps that prediction's time (``exposed_at``; for a unit, its latest
prediction's), and when eviction has removed every prediction older than it,
it goes too. An outcome by unit whose unit still has predictions moves its
``exposed_at`` to their latest instead. So the outcomes are bounded by the
predictions (at most one per metric and prediction row, or per metric and
unit), and the TTL and ``max_rows`` bound both.

**Sums.** An experiment compares its arms by **analysis unit**: the
assignment unit when the request had one, else the request itself (a request
routed by a coin, or every request of an experiment without a key). Each
analysis unit i of an arm gives a metric two numbers:

- ``x``: its exposures, the stored predictions (rows) of the unit in that arm
  and window; for a label metric, its labelled rows that have a value;
- ``y``: the values attached to it, the sum of its outcomes (posted by unit or
  by one of its requests), or of its labelled rows' per-row values.

A unit no outcome names counts with ``y = 0``: an outcome is posted when it
happens (a conversion), so silence is a zero. A label metric counts only the
units with a labelled row. Per arm, the store returns the mergeable sums of
those pairs, the columns :data:`SUMS` (n = units, Σy, Σx, Σy², Σx², Σxy),
enough for a per-unit mean and variance and for the delta method's
per-exposure ratio Σy/Σx (:mod:`sidecar.experiments.moments`), and additive
across segments, periods and replicas. :class:`UnitSums` holds them

- by **segment**: the ``segment`` of the unit's first exposure in the window
  (None when that request had none), so the segments partition the units and
  add up to :attr:`UnitSums.total`;
- by **period** since the unit's first exposure: period k holds each unit's
  exposures in ``[k·P, (k + 1)·P)`` after its first one and the values
  attached to them, with the pairs (unit, period) as the units there; an
  outcome posted by unit belongs to no exposure and so to no period. An
  experiment without a key has no first exposure to count from: its periods
  are calendar periods from the window's first exposure (``calendar``).
  Periods past :data:`MAX_PERIODS` − 1 count in the last.

Outcome metrics are summed in the database (GROUP BY); a label metric's
per-row values need Python (:mod:`sidecar.experiments.labelled`), so the store
returns its labelled rows (:class:`LabelledExposures`) and :func:`unit_sums`
sums them the same way, with numpy.

Usage::

    sums = await store.outcome_sums("ranker-v2", "conversion", ("control", "treatment"), since=start,
                                    period_seconds=86400.0, calendar=False)
    n, total_y = sums.total[:, 0], sums.total[:, 1]       # per arm
    rows = await store.labelled_exposures(("control", "treatment"), since=start, period_seconds=86400.0,
                                          calendar=False)
    accuracy = unit_sums(rows, per_row_values)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson

from sidecar.store.values import Outcome, choose_row

__all__ = [
    "MAX_PERIODS",
    "SUMS",
    "LabelledExposures",
    "OutcomeRow",
    "UnitSums",
    "collect_exposures",
    "collect_sums",
    "collect_units",
    "empty_sums",
    "encode_outcome",
    "match_request",
    "match_unit",
    "period_parameters",
    "unit_sums",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]
Key = Literal["request", "unit"]

# The columns of every sums array: units, Σy, Σx, Σy², Σx², Σxy.
SUMS: Final = ("n", "y", "x", "yy", "xx", "xy")
# A year of daily periods; a shorter period length folds the tail into the last one rather than grow the arrays.
MAX_PERIODS: Final = 366


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One business outcome as stored: its key, value and times, and the prediction it joined.

    ``kind`` is ``request`` (``key`` the request id, ``row`` its row) or
    ``unit`` (``key`` the unit, ``row`` 0). ``model``, ``variant`` and
    ``unit`` are the joined prediction's (``unit`` None: a request routed
    without one); ``exposed_at`` its time, by which the outcome is evicted.

    Usage::

        OutcomeRow("conversion", "unit", "u-17", 0, 1.0, None, "iris", "treatment", "u-17", 1764144638.0)
    """

    metric: str
    kind: Key
    key: str
    row: int
    value: float
    timestamp: float | None
    model: str
    variant: str
    unit: str | None
    exposed_at: float

    @property
    def identity(self) -> tuple[str, str, str, int]:
        """What makes it a duplicate within an experiment: (metric, kind, key, row)."""
        return self.metric, self.kind, self.key, self.row


@dataclass(frozen=True, slots=True)
class UnitSums:
    """One metric's sums per arm, the columns :data:`SUMS`: by segment, and by period since first exposure.

    ``segments`` maps a segment (None: none) to an (arms, 6) array;
    ``periods`` is (periods, arms, 6). ``by_request`` and ``by_unit`` count the
    outcomes summed, by how they were keyed (a label metric's rows count as
    ``by_request``): a metric posted by unit is a per-unit value, one posted
    by request a per-exposure rate.

    Usage::

        sums.total[arm]          # n, Σy, Σx, Σy², Σx², Σxy of that arm's units
        sums.periods[0, arm, 0]  # units exposed in their first period
    """

    segments: Mapping[str | None, Floats]
    periods: Floats
    arms: int
    by_request: int = 0
    by_unit: int = 0

    @property
    def total(self) -> Floats:
        """The sums over every unit, per arm: the segments added up."""
        total = np.zeros((self.arms, len(SUMS)))
        for sums in self.segments.values():
            total += sums
        return total


@dataclass(frozen=True, slots=True)
class LabelledExposures:
    """The labelled predictions of an experiment's arms in a window, column by column, one entry per row.

    ``unit`` numbers the analysis units (0, 1, ...); ``arm`` is the index in
    the arms asked for; ``segment`` is the unit's (that of its first exposure)
    and ``period`` the row's, as :class:`UnitSums` defines them. The
    prediction, scores and label are as stored (decoded JSON).

    Usage::

        rows = await store.labelled_exposures(("control", "treatment"), since=start, period_seconds=86400.0,
                                              calendar=False)
        values = accuracy_values(rows.prediction, rows.label)   # one float per row, NaN where unusable
        sums = unit_sums(rows, values)
    """

    arms: int
    unit: Ints
    arm: Ints
    period: Ints
    segment: list[str | None]
    prediction: list[Any]
    scores: list[list[float] | None]
    label: list[Any]

    def __len__(self) -> int:
        return int(self.unit.size)


def period_parameters(window: dict[str, Any], *, period_seconds: float, calendar: bool) -> dict[str, Any]:
    """A backend's query parameters for sums by period: its ``window`` (arms, since, model) with the period's
    length, whether periods are calendar ones, and the last period (:data:`MAX_PERIODS` − 1)."""
    return {**window, "period": period_seconds, "calendar": calendar, "last": MAX_PERIODS - 1}


def collect_units(arms: Sequence[str], rows: Iterable[Sequence[Any]]) -> npt.NDArray[np.int64]:
    """A backend's rows (variant, units, requests routed without one) as one row per arm, in ``arms``' order."""
    counts = np.zeros((len(arms), 2), dtype=np.int64)
    index = {name: i for i, name in enumerate(arms)}
    for variant, keyed, single in rows:
        counts[index[variant]] = (keyed, single)
    return counts


def empty_sums(arms: int) -> UnitSums:
    """The sums of no units."""
    return UnitSums({}, np.zeros((0, arms, len(SUMS))), arms)


def collect_sums(
    arms: Sequence[str], by_segment: Iterable[Sequence[Any]], by_period: Iterable[Sequence[Any]]
) -> UnitSums:
    """A backend's two result sets as :class:`UnitSums`.

    ``by_segment``: rows (variant, segment, n, Σy, Σx, Σy², Σx², Σxy,
    by_request, by_unit); ``by_period``: rows (variant, period, n, Σy, Σx,
    Σy², Σx², Σxy). Only the arms asked for come back, in that order.
    """
    index = {name: i for i, name in enumerate(arms)}
    segments: dict[str | None, Floats] = {}
    by_request = by_unit = 0
    for variant, segment, *sums, requests, units in by_segment:
        segments.setdefault(segment, np.zeros((len(arms), len(SUMS))))[index[variant]] = sums
        by_request += int(requests)
        by_unit += int(units)
    rows = [(index[variant], int(period), sums) for variant, period, *sums in by_period]
    periods = np.zeros((max((k for _, k, _ in rows), default=-1) + 1, len(arms), len(SUMS)))
    for arm, k, sums in rows:
        periods[k, arm] = sums
    return UnitSums(segments, periods, len(arms), by_request=by_request, by_unit=by_unit)


def collect_exposures(arms: Sequence[str], rows: Iterable[Sequence[Any]]) -> LabelledExposures:
    """A backend's labelled rows, (unit, variant, segment, period, prediction, scores, label) with the JSON
    columns as text, as :class:`LabelledExposures`."""
    index = {name: i for i, name in enumerate(arms)}
    units: list[int] = []
    arm: list[int] = []
    period: list[int] = []
    segment: list[str | None] = []
    prediction: list[Any] = []
    scores: list[list[float] | None] = []
    label: list[Any] = []
    loads = orjson.loads
    for row in rows:
        units.append(row[0])
        arm.append(index[row[1]])
        segment.append(row[2])
        period.append(row[3])
        prediction.append(loads(row[4]))
        scores.append(None if row[5] is None else loads(row[5]))
        label.append(loads(row[6]))
    return LabelledExposures(
        len(arms),
        np.array(units, dtype=np.intp),
        np.array(arm, dtype=np.intp),
        np.array(period, dtype=np.intp),
        segment,
        prediction,
        scores,
        label,
    )


def unit_sums(exposures: LabelledExposures, values: npt.ArrayLike) -> UnitSums:
    """Sum per-row ``values`` (NaN: the row has none) over the analysis units, as the database sums outcomes.

    Each unit's ``x`` is its rows with a value, ``y`` their sum; a unit with
    none is left out.
    """
    y_all = np.asarray(values, dtype=np.float64)
    if y_all.shape != exposures.unit.shape:
        raise ValueError(f"expected one value per row: {y_all.shape} for {exposures.unit.shape}")
    usable = np.flatnonzero(np.isfinite(y_all))
    arms = exposures.arms
    if usable.size == 0:
        return empty_sums(arms)
    y, unit, arm, period = y_all[usable], exposures.unit[usable], exposures.arm[usable], exposures.period[usable]
    # Per analysis unit: its rows' sum and count, its arm and its segment (every row of a unit has the same).
    _, first, inverse = np.unique(unit, return_index=True, return_inverse=True)
    unit_y = np.bincount(inverse, weights=y)
    unit_x = np.bincount(inverse).astype(np.float64)
    unit_arm = arm[first]
    names: dict[str | None, int] = {}
    unit_segment = np.fromiter(
        (names.setdefault(exposures.segment[i], len(names)) for i in usable[first].tolist()),
        dtype=np.intp,
        count=first.size,
    )
    segments = {
        name: _sums(unit_arm[chosen], unit_y[chosen], unit_x[chosen], arms)
        for name, code in names.items()
        for chosen in [unit_segment == code]
    }
    # Per (unit, period): the pairs are the units of each period.
    pair = unit.astype(np.int64) * MAX_PERIODS + np.minimum(period, MAX_PERIODS - 1)
    pairs, first_row, pair_of = np.unique(pair, return_index=True, return_inverse=True)
    pair_y = np.bincount(pair_of, weights=y)
    pair_x = np.bincount(pair_of).astype(np.float64)
    pair_period = (pairs % MAX_PERIODS).astype(np.intp)
    periods = np.zeros((int(pair_period.max()) + 1, arms, len(SUMS)))
    for k in np.unique(pair_period).tolist():
        chosen = pair_period == k
        periods[k] = _sums(arm[first_row][chosen], pair_y[chosen], pair_x[chosen], arms)
    return UnitSums(segments, periods, arms, by_request=int(usable.size))


def _sums(arm: Ints, y: Floats, x: Floats, arms: int) -> Floats:
    """The (arms, 6) sums of units with these arms and (y, x)."""
    columns = (np.ones_like(y), y, x, y * y, x * x, x * y)
    return np.stack([np.bincount(arm, weights=c, minlength=arms) for c in columns], axis=1)


def encode_outcome(item: object) -> tuple[str, float, str | None, int | None, str | None, float | None]:
    """A business outcome's ``(metric, value, request_id, row, unit, timestamp)``, or ValueError saying why not.

    The item is :class:`sidecar.experiments.outcomes.OutcomeItem` or any tuple
    of those six fields in that order. The outcomes endpoint validates it
    against the experiment; this defends the store against callers that do
    not, since one bad item must not fail the whole batch.
    """
    if not isinstance(item, tuple) or len(item) != 6:
        raise ValueError("expected (metric, value, request_id, row, unit, timestamp)")
    metric, value, request_id, row, unit, timestamp = item
    if not isinstance(metric, str) or not metric:
        raise ValueError("metric must be a non-empty string")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("value must be a finite number")
    if (request_id is None) == (unit is None):
        raise ValueError("expected exactly one of request_id and unit")
    if request_id is not None and (not isinstance(request_id, str) or not request_id):
        raise ValueError("request_id must be a non-empty string")
    if unit is not None and (not isinstance(unit, str) or not unit):
        raise ValueError("unit must be a non-empty string")
    # bool is an int subclass, and True must not quietly mean row 1; a unit has no rows.
    if row is not None and (not isinstance(row, int) or isinstance(row, bool) or row < 0 or unit is not None):
        raise ValueError("row must be a non-negative integer, or null; always null with a unit")
    if timestamp is not None and (
        not isinstance(timestamp, int | float) or isinstance(timestamp, bool) or not math.isfinite(timestamp)
    ):
        raise ValueError("timestamp must be a finite number of Unix seconds or null")
    return metric, float(value), request_id, row, unit, None if timestamp is None else float(timestamp)


def match_request(
    item: tuple[str, float, str | None, int | None, str | None, float | None],
    found: Sequence[tuple[int, str, str, str | None, float]],
    arms: Sequence[str],
) -> OutcomeRow | Outcome:
    """The row to store for an outcome by request, or why not; ``found``: (row, model, variant, unit, ts) of
    the predictions with its request id (and row, if it has one)."""
    metric, value, request_id, row, _, timestamp = item
    if request_id is None:
        raise ValueError("an outcome by unit")  # pragma: no cover - the caller sorts them
    if (decided := choose_row(request_id, row, [match[0] for match in found])) is not None:
        return decided
    row_index, model, variant, unit, ts = found[0]
    if variant not in arms:
        return Outcome("unmatched", reason=f"request {request_id} was served by {variant!r}, not an arm")
    return OutcomeRow(metric, "request", request_id, row_index, value, timestamp, model, variant, unit, ts)


def match_unit(
    item: tuple[str, float, str | None, int | None, str | None, float | None],
    found: tuple[str, str, float] | None,
) -> OutcomeRow | Outcome:
    """The row to store for an outcome by unit, or why not; ``found``: (model, variant) of the unit's first
    prediction in the arms and the time of its latest, or None when it has none."""
    metric, value, _, _, unit, timestamp = item
    if unit is None:
        raise ValueError("an outcome by request")  # pragma: no cover - the caller sorts them
    if found is None:
        return Outcome("unmatched", reason="no stored prediction of the experiment's arms has that unit")
    model, variant, latest = found
    return OutcomeRow(metric, "unit", unit, 0, value, timestamp, model, variant, unit, latest)
