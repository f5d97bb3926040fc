"""Judging a parsed condition against one evaluation's signals, in three-valued logic.

A comparison on a signal without a value (None: too few samples, no labels
yet) is neither true nor false but *unknown*, and only a condition that is
plainly true fires. The connectives follow Kleene's (and SQL's) logic:

=========  ===========================================================
``not``    not unknown is unknown
``and``    false if any part is false, else unknown if any is, else true
``or``     true if any part is true, else unknown if any is, else false
=========  ===========================================================

So ``not accuracy > 0.9`` does not fire while accuracy is unknown, and
``psi > 0.2 or accuracy < 0.8`` fires on either known part alone, never on
the missing one. Treating unknown as false would make ``not`` fire on missing
data, paging people for an empty window. A text signal without a word (no
experiment, or none analysed yet) is unknown the same way, so
``experiment_decision != "roll_out"`` stays quiet without an experiment.

``deviates(SIGNAL, K)`` judges the current value against the *previous*
values in the baseline window (the engine records the new value after every
rule was judged): a spike must not widen the spread it is measured against.
With fewer than :data:`MIN_HISTORY` previous values it is unknown, like any
other signal without enough data. With zero spread it is false: a constant
history gives no scale to measure deviation in, and a static threshold is the
tool for a signal that should never move.
"""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sidecar.alerting.conditions import And, Compare, Condition, Deviates, Equals, Not, Operator, Or, SignalRef
from sidecar.alerting.signals import FEATURE_SIGNALS, Signals

__all__ = ["MIN_HISTORY", "Term", "Truth", "judge", "resolve"]

# Previous values a rolling mean and standard deviation need to mean anything.
MIN_HISTORY: Final = 5

Truth = bool | None  # None: unknown, for want of data

_COMPARE: Final[Mapping[Operator, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Term:
    """One comparison or ``deviates`` call as judged: the value seen against its threshold.

    ``feature`` names the feature a per-feature signal was read from, the
    worst one when the condition has no selector. For ``deviates``,
    ``threshold`` is K and ``mean``, ``std``, ``points`` describe the history.
    For a text signal, ``value`` is the word seen and ``threshold`` the word tested for.
    """

    expression: str
    signal: str
    feature: str | None
    value: float | str | None
    threshold: float | str
    result: Truth
    mean: float | None = None
    std: float | None = None
    points: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "expression": self.expression,
            "signal": self.signal,
            "feature": self.feature,
            "value": self.value,
            "threshold": self.threshold,
            "result": self.result,
        }
        if self.points is not None:
            out |= {"mean": self.mean, "std": self.std, "points": self.points}
        return out

    def describe(self) -> str:
        """For a person: ``psi = 0.31 for feature 'age' (psi > 0.2)``."""
        where = f" for feature {self.feature!r}" if self.feature is not None else ""
        if self.value is None:
            return f"{self.signal}{where}: not enough data ({self.expression})"
        if isinstance(self.value, str):
            return f"{self.signal} = {self.value!r} ({self.expression})"
        if self.points is None:
            return f"{self.signal} = {self.value:.4g}{where} ({self.expression})"
        if self.mean is None or self.std is None:
            return f"{self.signal} = {self.value:.4g}{where}: {self.points} of {MIN_HISTORY} baseline points"
        sigmas = abs(self.value - self.mean) / self.std if self.std > 0 else 0.0
        return (
            f"{self.signal} = {self.value:.4g}{where}, {sigmas:.1f} standard deviations from its mean "
            f"{self.mean:.4g} ({self.expression})"
        )


def resolve(ref: SignalRef, signals: Signals) -> tuple[float | None, str | None]:
    """A signal's value and the feature it came from (the worst one when no feature is selected)."""
    if ref.name not in FEATURE_SIGNALS:
        return signals.value(ref.name), None
    if ref.feature is not None:
        return signals.feature_value(ref.name, ref.feature), ref.feature
    worst = signals.worst(ref.name)
    return (None, None) if worst is None else (worst[1], worst[0])


def judge(
    condition: Condition, signals: Signals, history: Mapping[SignalRef, Sequence[float]]
) -> tuple[Truth, tuple[Term, ...]]:
    """The condition's truth, and every comparison in it as judged, left to right.

    ``history`` holds the previous values of each signal a ``deviates`` reads,
    oldest first, within the baseline window.
    """
    terms: list[Term] = []
    return _judge(condition, signals, history, terms), tuple(terms)


def _judge(
    condition: Condition, signals: Signals, history: Mapping[SignalRef, Sequence[float]], terms: list[Term]
) -> Truth:
    if isinstance(condition, Compare):
        value, feature = resolve(condition.signal, signals)
        result = None if value is None else _COMPARE[condition.op](value, condition.threshold)
        terms.append(Term(str(condition), condition.signal.name, feature, value, condition.threshold, result))
        return result
    if isinstance(condition, Equals):
        name = condition.signal.name
        word = signals.text(name)
        result = None if word is None else (word == condition.word) == (condition.op == "==")
        terms.append(Term(str(condition), name, None, word, condition.word, result))
        return result
    if isinstance(condition, Deviates):
        term = _deviates(condition, signals, history.get(condition.signal, ()))
        terms.append(term)
        return term.result
    if isinstance(condition, Not):
        inner = _judge(condition.operand, signals, history, terms)
        return None if inner is None else not inner
    # Every operand is judged, with no short cut, so the context shows all parts of a compound condition.
    results = [_judge(operand, signals, history, terms) for operand in condition.operands]
    if isinstance(condition, And):
        return False if False in results else None if None in results else True
    if isinstance(condition, Or):
        return True if True in results else None if None in results else False
    raise TypeError(f"not a condition: {condition!r}")  # pragma: no cover - the union is exhaustive


def _deviates(condition: Deviates, signals: Signals, previous: Sequence[float]) -> Term:
    value, feature = resolve(condition.signal, signals)
    points = len(previous)

    def term(result: Truth, mean: float | None = None, std: float | None = None) -> Term:
        return Term(str(condition), condition.signal.name, feature, value, condition.k, result, mean, std, points)

    if value is None or points < MIN_HISTORY:
        return term(None)
    mean = statistics.fmean(previous)
    # The sample standard deviation: the history is a sample of the signal's normal behaviour.
    std = statistics.stdev(previous)
    if not std > 0 or not math.isfinite(std):
        return term(False, mean, std)
    return term(abs(value - mean) > condition.k * std, mean, std)
