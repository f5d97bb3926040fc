"""How one row's model output becomes ``prediction``, ``confidence`` and ``scores``.

Every adapter finds one output value per row and hands it to :func:`interpret`.
The rules, in order (a "number" is a JSON int or float, never a bool):

1. ``null`` → no prediction.
2. A bool, an int or a string is a class label: ``prediction`` = the value,
   ``confidence`` = None.
3. A float in [0, 1] is read as a binary classifier's P(positive):
   ``prediction`` = 1 if p ≥ 0.5 else 0, ``confidence`` = max(p, 1 − p),
   ``scores`` = [1 − p, p]. Not with ``SIDECAR_TASK=regression``
   (``interpret(value, regression=True)``): there a number, alone, in a
   one-element list or as an object's label member (``{"prediction": 0.7}``),
   is the predicted value, whatever its range.
4. Any other float (outside [0, 1], NaN, ±inf) is a regression output:
   ``prediction`` = the value, ``confidence`` = None.
5. A one-element list is its element (shapes like ``[N, 1]``).
6. A list of two or more numbers:
   - non-negative, finite and summing to 1 ± ``SUM_TOLERANCE`` → a probability
     vector: ``prediction`` = argmax index, ``confidence`` = max, ``scores`` = the vector;
   - otherwise, if any element is a float → unnormalised class scores (logits):
     ``prediction`` = argmax index, ``confidence`` = None, ``scores`` = the vector;
   - otherwise (all ints) → several labels: ``prediction`` = the list.
7. A list of ``{label, score}`` objects (top-k, as Hugging Face pipelines return):
   ``prediction`` = the label with the highest score, ``confidence`` = that score
   when it is in [0, 1], ``scores`` = the scores in order.
8. An object. Keys are matched case-insensitively against three lists:
   labels (``LABEL_KEYS``, e.g. ``label``, ``class``, ``prediction``), a label
   vocabulary (``VOCAB_KEYS``, e.g. ``classes``, ``labels``) and scores
   (``SCORE_KEYS``, e.g. ``probabilities``, ``probability``, ``score``).
   - a label (or a one-entry vocabulary) and a single number score
     (``{"label": "cat", "score": 0.93}``) → prediction = the label,
     confidence = the score if in [0, 1], scores = [score];
   - otherwise the scores are read by rules 1-7 (so a lone float is P(positive));
     the prediction is the label when given, else the vocabulary entry at the
     argmax when the vocabulary has as many entries as the scores
     (``{"probability": 0.8, "classes": ["no", "yes"]}`` → "yes"), else as read;
   - a label alone → interpreted by these same rules (``{"prediction": 0.7}``
     is rule 3); a one-element list label is its element (``class_ids: [1]``);
   - no known key: an object of two or more numbers that is a probability vector
     (``{"cat": 0.9, "dog": 0.1}``) → prediction = the key of the max; a single
     member → its value; several members (e.g. several named model outputs) →
     the first list member that gives a confidence (rules 6 and 7) gives
     confidence and scores, and the first label-like member (bool, int, string,
     or a one-element list of one) the prediction; with neither, the prediction
     is the object itself and there is no confidence, because which output
     matters is unknown.
9. Anything else (a list of strings, nested lists) → ``prediction`` = the value.

``confidence`` is only ever a probability in [0, 1]; importance sampling
compares it across rows, so a raw score never masquerades as one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "interpret", "LABEL_KEYS", "VOCAB_KEYS", "SCORE_KEYS", "SUM_TOLERANCE"]

# Wide enough for FP16 outputs and rounded JSON: three classes rounded to two
# decimals can be off by 0.015 ([0.33, 0.33, 0.33] sums to 0.99).
SUM_TOLERANCE = 0.02

LABEL_KEYS = (
    "label",
    "predicted_label",
    "class",
    "predicted_class",
    "class_id",
    "class_ids",
    "prediction",
    "predictions",
    "predict",
    "output_label",
)
VOCAB_KEYS = ("classes", "labels", "class_names", "all_classes", "categories")
SCORE_KEYS = (
    "probabilities",
    "probability",
    "probs",
    "predict_proba",
    "logistic",
    "scores",
    "score",
    "confidence",
    "logits",
)

_ABSENT: Any = object()  # a missing member, distinct from a member that is null
# Any value above this rules a vector out before its sum is taken (see _is_probability).
_MAX_PROBABILITY = 2.0
_EXACT_NUMBERS = frozenset((int, float))  # the number types of parsed JSON, without bool or subclasses


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and one or two
# Outcomes are built per captured row. Nothing keeps or hashes them (``scores`` is a list anyway).
@dataclass(slots=True)
class Outcome:
    """One row's reading of the model output."""

    prediction: Any = None
    confidence: float | None = None
    scores: list[float] | None = None


def interpret(value: Any, *, regression: bool = False) -> Outcome:
    """Read one row's output value by the rules in this module's docstring; ``regression`` as rule 3 says."""
    if regression and (number := _regression_value(value)) is not None:
        return Outcome(number)
    # Parsed JSON holds exact types: dispatch on them first, with one test each; subclasses take the chain below.
    kind = type(value)
    if kind is dict:
        return _object(value)
    if kind is list:
        return _list(value)
    if kind is float:
        return _number(value)
    if value is None or isinstance(value, bool | int | str):
        return Outcome(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return _list(value)
    if isinstance(value, dict):
        return _object(value)
    return Outcome(value)


def _regression_value(value: Any) -> float | None:
    """A regression model's number: alone, in one-element lists, or an object's label member; else None."""
    for _ in range(_MAX_UNWRAP):
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        elif isinstance(value, dict):
            label, _, _ = _known(value)
            if label is not _ABSENT:
                value = label
            elif len(value) == 1:
                value = next(iter(value.values()))
            else:
                return None
        else:
            break
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    # Parsed JSON holds exact ints and floats: test those first, subclasses (numpy floats) after.
    kind = type(value)
    return kind is float or kind is int or (isinstance(value, int | float) and not isinstance(value, bool))


def _floats(values: list[Any]) -> list[float] | None:
    """The values as floats when every one is a number, else None."""
    vector: list[float] = []
    for x in values:
        if not _is_number(x):
            return None
        vector.append(float(x))
    return vector


def _number(p: float) -> Outcome:
    if 0.0 <= p <= 1.0:
        return Outcome(1 if p >= 0.5 else 0, max(p, 1.0 - p), [1.0 - p, p])
    return Outcome(p)


def _is_probability(vector: list[float]) -> bool:
    # Finite and non-negative, summing to about 1, with C-level passes. NaN: min and max skip a NaN
    # anywhere but first (where it sticks and fails its comparison), and one the comparisons let
    # through makes the sum NaN, which fails the last test; so any NaN still means False.
    # Non-negative values of which one is above 2 cannot sum to about 1: saying so before the sum
    # also keeps math.fsum from overflowing (it raises on [1e308, 1e308]).
    return (
        len(vector) >= 2
        and min(vector) >= 0.0
        and max(vector) <= _MAX_PROBABILITY
        and abs(math.fsum(vector) - 1.0) <= SUM_TOLERANCE
    )


def _argmax(vector: list[float]) -> int | None:
    """The index of the largest value: NaN never wins; the first of equal maxima does; None when all are NaN."""
    if not vector:
        return None
    # max() keeps the first of equal values and, once past a non-NaN value, skips every NaN; so its
    # answer is right unless the first value is NaN, the one case left to the loop below.
    top = max(vector)
    if top == top:
        return vector.index(top)
    best: int | None = None
    for i, x in enumerate(vector):
        if x == x and (best is None or x > vector[best]):
            best = i
    return best


def _list(values: list[Any]) -> Outcome:
    if not values:
        return Outcome()
    if len(values) == 1:
        return interpret(values[0])
    kinds = set(map(type, values))
    if kinds <= _EXACT_NUMBERS:
        # Exact ints and floats, as parsed JSON holds them: _floats, _is_probability and _argmax
        # below with C-level passes, one min and one max (see _is_probability for NaN).
        numbers: list[float] = list(map(float, values)) if int in kinds else values[:]  # floats: just a copy
        highest = max(numbers)
        if min(numbers) >= 0.0 and highest <= _MAX_PROBABILITY and abs(math.fsum(numbers) - 1.0) <= SUM_TOLERANCE:
            return Outcome(numbers.index(highest), highest, numbers)
        if float in kinds:
            return Outcome(_argmax(numbers), None, numbers)
        return Outcome(values)
    # Anything else (bool, a subclass, an object) takes the general path.
    vector = _floats(values)
    if vector is not None:
        if _is_probability(vector):
            top = _argmax(vector)
            return Outcome(top, None if top is None else vector[top], vector)
        if any(issubclass(kind, float) for kind in kinds):
            return Outcome(_argmax(vector), None, vector)
        return Outcome(values)
    pairs = [_label_score(x) for x in values]
    if all(pair is not None for pair in pairs):
        scored = [pair for pair in pairs if pair is not None]  # for mypy: all are
        vector = [score for _, score in scored]
        top = _argmax(vector)
        if top is None:
            return Outcome(scored[0][0], None, vector)
        best = vector[top]
        return Outcome(scored[top][0], best if 0.0 <= best <= 1.0 else None, vector)
    return Outcome(values)


def _label_score(item: Any) -> tuple[Any, float] | None:
    """``(label, score)`` for a ``{label, score}`` object, else None."""
    if not isinstance(item, dict):
        return None
    label, _, score = _known(item)
    if label is _ABSENT or score is _ABSENT or not _is_number(score):
        return None
    return label, float(score)


# Each known key, lower-case, as (list, rank): 0 labels, 1 vocabularies, 2 scores; rank is its place in its list.
_KNOWN: dict[str, tuple[int, int]] = {
    key: (kind, rank) for kind, keys in enumerate((LABEL_KEYS, VOCAB_KEYS, SCORE_KEYS)) for rank, key in enumerate(keys)
}


_PAST = max(map(len, (LABEL_KEYS, VOCAB_KEYS, SCORE_KEYS)))  # a rank after every known key's
# How deep a regression value is looked for: [[{"prediction": [0.7]}]] and no deeper.
_MAX_UNWRAP = 4


def _known(obj: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The label, vocabulary and scores members of an object, each ``_ABSENT`` when missing.

    Keys match case-insensitively; of several keys in one list, the earliest in
    the list wins, and of keys equal but for case, the first in the object.
    One pass over the object's keys, which are few, rather than one lookup per known key.
    """
    # Three pairs of locals rather than two lists: this runs for every object output.
    label = vocab = score = _ABSENT
    label_rank = vocab_rank = score_rank = _PAST
    for key, value in obj.items():
        known = _KNOWN.get(key) if key.islower() else _KNOWN.get(key.lower())
        if known is not None:
            kind, rank = known
            if kind == 0:
                if rank < label_rank:
                    label, label_rank = value, rank
            elif kind == 1:
                if rank < vocab_rank:
                    vocab, vocab_rank = value, rank
            elif rank < score_rank:
                score, score_rank = value, rank
    return label, vocab, score


def _unwrap(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _is_label(value: Any) -> bool:
    return isinstance(_unwrap(value), bool | int | str)


def _object(obj: dict[str, Any]) -> Outcome:
    label, vocab, score = _known(obj)
    if label is _ABSENT and vocab is _ABSENT and score is _ABSENT:
        return _unknown(obj)
    if score is _ABSENT:
        if label is not _ABSENT:
            return interpret(_unwrap(label))
        # A vocabulary without scores says nothing about this row unless it is
        # one entry, as in TensorFlow estimators' "classes": ["1"].
        return Outcome(_unwrap(vocab) if isinstance(vocab, list) and len(vocab) == 1 else None)
    if label is _ABSENT and isinstance(vocab, list) and len(vocab) == 1:
        label = vocab
    if label is not _ABSENT:
        # _unwrap twice, written out: the common object (a label with its scores) comes this way.
        if isinstance(label, list) and len(label) == 1:
            label = label[0]
        single = score[0] if isinstance(score, list) and len(score) == 1 else score
        if _is_number(single):
            # The score of the predicted label, not P(positive): it is the confidence as given.
            p = float(single)
            return Outcome(label, p if 0.0 <= p <= 1.0 else None, [p])
    # interpret() builds a new Outcome on every path, so this one is free to take the prediction.
    # Scores are most often a list, which goes straight to _list: interpret's answer for one.
    scored = _list(score) if type(score) is list else interpret(score)
    if label is not _ABSENT:
        scored.prediction = label
    elif isinstance(vocab, list) and scored.scores is not None and isinstance(scored.prediction, int):
        if len(vocab) == len(scored.scores):
            scored.prediction = vocab[scored.prediction]
        elif len(vocab) == 1:
            scored.prediction = vocab[0]
    return scored


def _unknown(obj: dict[str, Any]) -> Outcome:
    if not obj:
        return Outcome()
    values = list(obj.values())
    if len(values) >= 2 and all(_is_number(x) for x in values):
        vector = [float(x) for x in values]
        if _is_probability(vector):
            top = _argmax(vector)
            if top is not None:
                return Outcome(list(obj)[top], vector[top], vector)
    if len(values) == 1:
        return interpret(values[0])
    vectors = (interpret(v) for v in values if isinstance(v, list) and len(v) > 1)
    probabilities = next((o for o in vectors if o.confidence is not None), None)
    label = next((_unwrap(v) for v in values if _is_label(v)), _ABSENT)
    if probabilities is not None:
        prediction = probabilities.prediction if label is _ABSENT else label
        return Outcome(prediction, probabilities.confidence, probabilities.scores)
    return Outcome(obj if label is _ABSENT else label)
