"""The check names, and the per-record checker compiled from a profile and rules.

A :class:`Checker` is built once per profile into flat tuples, so a clean value
costs one dictionary lookup and one comparison (a range, or membership in the
allowed categories); only a value that fails it takes the slow path that
works out which check it violates. :meth:`Checker.check` does this for one
record in pure Python; :meth:`Checker.check_batch` does it for a batch,
first proving most values clean column by column (:mod:`.screen`), and
gives the same answer.

How a live value is read, per the feature's kind:

- **numeric**: ``int`` and ``float`` as they are; ``bool`` and numeric strings
  (``"3.5"``) through ``float()``, as :meth:`Distribution.bin_of` reads them.
  Anything else (another string, an object, a list) is a ``type`` violation.
- **categorical**: strings as they are; numbers and booleans through
  :func:`category_key` (JSON text, as the reference named them). Objects and
  lists are ``type`` violations.
- JSON ``null`` and NaN are nulls, for either kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from sidecar.quality.screen import Screen
from sidecar.reference import Kind, ReferenceProfile, category_key

__all__ = [
    "Check",
    "CHECKS",
    "FEATURE_CHECKS",
    "VOLUME_CHECKS",
    "UNEXPECTED",
    "ALL",
    "Violation",
    "Expectation",
    "Checker",
    "label_pairs",
    "reference_expectation",
]

Check = Literal[
    "missing",
    "unexpected",
    "type",
    "null",
    "out_of_range",
    "unseen_category",
    "negative",
    "volume_low",
    "volume_high",
    "missing_period",
]
CHECKS: Final[tuple[Check, ...]] = get_args(Check)
# Checks about one expected feature: these are the ones a rule may disable per feature.
FEATURE_CHECKS: Final[tuple[Check, ...]] = ("missing", "type", "null", "out_of_range", "unseen_category", "negative")
VOLUME_CHECKS: Final[tuple[Check, ...]] = ("volume_low", "volume_high", "missing_period")

# The ``feature`` label values that are not feature names. A name seen only in
# traffic never becomes a label value: it is counted under UNEXPECTED.
UNEXPECTED: Final = "__unexpected__"
ALL: Final = "__all__"

# (feature label, feature name as seen, check, value); the value is _ABSENT for "missing".
Violation = tuple[str, str, Check, Any]

_ABSENT: Final = object()
# JSON types that comparing with a float, or looking up in a set, only raises TypeError for.
_INCOMPARABLE: Final = frozenset({str, type(None), list, dict})
_UNHASHABLE: Final = frozenset({list, dict})
# float() of short strings, remembered: at most _PARSED_MAX of at most _PARSED_CHARS characters.
_PARSED_CHARS: Final = 64
_PARSED_MAX: Final = 1024
_parsed: dict[str, float | None] = {}
# Fewest records for which check_batch costs less than check on each (measured under callgrind).
SCREEN_MIN: Final = 8


@dataclass(frozen=True, slots=True)
class Expectation:
    """What one feature must look like, with disabled checks already folded in.

    ``low``/``high`` are -inf/inf when there is no range to check, ``allowed``
    is None when any category goes.
    """

    name: str
    kind: Kind | None  # None: a rule-only feature that names no kind; only missing and null apply
    missing: bool
    type: bool
    null: bool
    low: float = -math.inf
    high: float = math.inf
    non_negative: bool = False
    allowed: frozenset[str] | None = None


def label_pairs(features: Iterable[str]) -> list[tuple[str, str]]:
    """Every (feature, check) label pair for these feature names, in a stable order.

    Each feature gets every check of :data:`FEATURE_CHECKS`, applicable to its
    kind or not, so the set depends on configuration alone.
    """
    pairs: list[tuple[str, str]] = [(name, check) for name in features for check in FEATURE_CHECKS]
    pairs.append((UNEXPECTED, "unexpected"))
    pairs.extend((ALL, check) for check in VOLUME_CHECKS)
    return pairs


class Checker:
    """Find the violations in one record's features.

    Usage::

        checker = Checker([Expectation("age", "numeric", True, True, True, 0.0, 130.0, True)], check_unexpected=True)
        checker.check({"age": -3, "colour": "red"})
        # [("age", "age", "out_of_range", -3), ("age", "age", "negative", -3),
        #  ("__unexpected__", "colour", "unexpected", "red")]
    """

    __slots__ = (
        "expectations",
        "_numeric",
        "_categorical",
        "_untyped",
        "_names",
        "_check_unexpected",
        "_screen",
    )

    def __init__(self, expectations: Iterable[Expectation], *, check_unexpected: bool) -> None:
        self.expectations = expectations = tuple(expectations)
        # Per feature, what a valid value's fast path needs, then the expectation for the slow path.
        # A number is clean when floor <= x <= high: the range and the sign in one chained comparison.
        self._numeric = tuple(
            (e.name, max(e.low, 0.0) if e.non_negative else e.low, e.high, e)
            for e in expectations
            if e.kind == "numeric"
        )
        self._categorical = tuple((e.name, e.allowed, e) for e in expectations if e.kind == "categorical")
        self._untyped = tuple(e for e in expectations if e.kind is None)
        self._names = frozenset(e.name for e in expectations)
        self._check_unexpected = check_unexpected
        # Positions in the screen follow the order check() reports in: numeric, categorical, untyped.
        self._screen = Screen(
            [e.name for *_, e in self._numeric]
            + [e.name for *_, e in self._categorical]
            + [e.name for e in self._untyped],
            [(floor, high) for _, floor, high, _ in self._numeric],
            [allowed for _, allowed, _ in self._categorical],
            check_unexpected=check_unexpected,
        )

    def check(self, features: Mapping[str, Any]) -> list[Violation]:
        """The violations in ``features``, in the order of the expectations, unexpected names last."""
        found: list[Violation] = []
        get = features.get
        # Fast paths: a clean value costs a lookup and a comparison. A try block costs nothing
        # until it raises, which only a value that is not a number or not hashable does.
        for name, floor, high, e in self._numeric:
            value = get(name, _ABSENT)
            try:
                if floor <= value <= high:  # False for NaN; bools compare as 0 and 1, as float() reads them
                    continue
            except TypeError:
                pass
            _numeric(e, value, found)
        for name, allowed, e in self._categorical:
            value = get(name, _ABSENT)
            if allowed is None:
                if type(value) is str:
                    continue
            else:
                try:
                    if value in allowed:  # only strings are in it, so a number always takes the slow path
                        continue
                except TypeError:
                    pass
            _categorical(e, value, found)
        for e in self._untyped:
            value = get(e.name, _ABSENT)
            if value is _ABSENT or _is_null(value):
                _untyped(e, value, found)
        if self._check_unexpected and not self._names.issuperset(features):
            names = self._names
            found.extend((UNEXPECTED, key, "unexpected", value) for key, value in features.items() if key not in names)
        return found

    def check_batch(self, batch: Sequence[Mapping[str, Any]]) -> list[tuple[int, list[Violation]]]:
        """``(index, check(features))`` for each record of ``batch`` that has a violation, in order.

        The same answer as calling :meth:`check` on every record, for less:
        the :class:`~.screen.Screen` proves most values clean in C-level loops,
        and only the values it flags go through the per-value checks. Its
        fixed cost (a few numpy calls) pays off from about :data:`SCREEN_MIN`
        records; below that, call :meth:`check` per record.
        """
        check = self.check
        out: list[tuple[int, list[Violation]]] = []
        names = self._screen.names
        one = self._check_one
        for i, positions in self._screen.flags(batch):
            features = batch[i]
            if positions is None:
                found = check(features)
            else:
                found = []
                for position in positions:
                    if position == len(names):
                        known = self._names
                        found.extend(
                            (UNEXPECTED, key, "unexpected", value)
                            for key, value in features.items()
                            if key not in known
                        )
                    else:
                        one(position, features[names[position]], found)
            if found:
                out.append((i, found))
        return out

    def _check_one(self, position: int, value: Any, found: list[Violation]) -> None:
        """check()'s logic for the feature at ``position`` of the screen and a value that is present."""
        numeric = len(self._numeric)
        # The screen flags mostly malformed values: the JSON types that check()'s fast test would
        # raise TypeError on go straight to the slow path, which gives the same answer without
        # the cost of an exception.
        if position < numeric:
            _, floor, high, e = self._numeric[position]
            if type(value) not in _INCOMPARABLE:
                try:
                    if floor <= value <= high:
                        return
                except TypeError:
                    pass
            _numeric(e, value, found)
            return
        position -= numeric
        if position < len(self._categorical):
            _, allowed, e = self._categorical[position]
            if allowed is None:
                if type(value) is str:
                    return
            elif type(value) not in _UNHASHABLE:
                try:
                    if value in allowed:
                        return
                except TypeError:
                    pass
            _categorical(e, value, found)
            return
        e = self._untyped[position - len(self._categorical)]
        if _is_null(value):
            _untyped(e, value, found)


def _numeric(e: Expectation, value: Any, found: list[Violation]) -> None:
    name = e.name
    if value is _ABSENT:
        if e.missing:
            found.append((name, name, "missing", value))
        return
    x = value if type(value) is float or type(value) is int else _as_number(value)
    if x is None:
        if value is None:
            if e.null:
                found.append((name, name, "null", value))
        elif e.type:
            found.append((name, name, "type", value))
        return
    if x != x:
        if e.null:
            found.append((name, name, "null", value))
        return
    if x < e.low or x > e.high:
        found.append((name, name, "out_of_range", value))
    if e.non_negative and x < 0:
        found.append((name, name, "negative", value))


def _categorical(e: Expectation, value: Any, found: list[Violation]) -> None:
    name = e.name
    if value is _ABSENT:
        if e.missing:
            found.append((name, name, "missing", value))
        return
    if _is_null(value):
        if e.null:
            found.append((name, name, "null", value))
        return
    key = value if type(value) is str else _as_category(value)
    if key is None:
        if e.type:
            found.append((name, name, "type", value))
    elif e.allowed is not None and key not in e.allowed:
        found.append((name, name, "unseen_category", value))


def _untyped(e: Expectation, value: Any, found: list[Violation]) -> None:
    name = e.name
    if value is _ABSENT:
        if e.missing:
            found.append((name, name, "missing", value))
    elif e.null:
        found.append((name, name, "null", value))


def _is_null(value: Any) -> bool:
    return value is None or (type(value) is float and value != value)


def _as_number(value: Any) -> float | None:
    """A non-int, non-float live value as a number, or None when it is not one (null included)."""
    if type(value) is str and len(value) <= _PARSED_CHARS:
        # A malformed client sends the same few strings over and over, and float() of one that
        # is not a number costs an exception: remember the answers, a bounded number of them.
        try:
            return _parsed[value]
        except KeyError:
            pass
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        _parsed[value] = number = _parse(value)
        return number
    if isinstance(value, bool | str):
        return _parse(value)
    return None


def _parse(value: bool | str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _as_category(value: Any) -> str | None:
    """A non-string, non-null live value as a category key, or None for objects and lists."""
    if isinstance(value, dict | list):
        return None
    try:
        return category_key(value)
    except TypeError:  # orjson cannot name it: not a JSON value, so not a category either
        return None


def reference_expectation(
    name: str,
    profile: ReferenceProfile,
    tolerance: float,
) -> Expectation:
    """What the reference alone expects of one of its features (every check on)."""
    dist = profile.features[name]
    stats = dist.stats
    null = stats.null_share == 0.0
    if dist.kind == "categorical":
        # An empty vocabulary (all nulls, or everything folded into OTHER) would make every value unseen.
        allowed = frozenset(dist.categories) if dist.categories else None
        return Expectation(name, "categorical", True, True, null, allowed=allowed)
    low, high = -math.inf, math.inf
    if stats.min is not None and stats.max is not None:
        slack = tolerance * (stats.max - stats.min)
        low, high = stats.min - slack, stats.max + slack
    non_negative = stats.min is not None and stats.min >= 0.0
    return Expectation(name, "numeric", True, True, null, low, high, non_negative)
