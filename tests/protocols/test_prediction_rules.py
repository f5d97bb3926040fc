"""The prediction/confidence rules of ``sidecar.protocols.predictions``, one table row per rule."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sidecar.protocols.predictions import Outcome, interpret

CASES: list[tuple[str, Any, Outcome]] = [
    ("null", None, Outcome()),
    ("int class", 3, Outcome(3)),
    ("string class", "cat", Outcome("cat")),
    ("bool class", True, Outcome(True)),
    ("float in [0,1] is P(positive)", 0.8, Outcome(1, 0.8, [0.2, 0.8])),
    ("P(positive) below the threshold", 0.25, Outcome(0, 0.75, [0.75, 0.25])),
    ("threshold is inclusive", 0.5, Outcome(1, 0.5, [0.5, 0.5])),
    ("0.0 is a probability", 0.0, Outcome(0, 1.0, [1.0, 0.0])),
    ("float above 1 is regression", 1.5, Outcome(1.5)),
    ("negative float is regression", -0.2, Outcome(-0.2)),
    ("one-element list is its element", [0.9], Outcome(1, 0.9, [0.1, 0.9])),
    ("one-element list of a label", ["dog"], Outcome("dog")),
    ("probability vector", [0.1, 0.7, 0.2], Outcome(1, 0.7, [0.1, 0.7, 0.2])),
    ("rounded probability vector", [0.33, 0.33, 0.33], Outcome(0, 0.33, [0.33, 0.33, 0.33])),
    ("one-hot ints are probabilities", [0, 1], Outcome(1, 1.0, [0.0, 1.0])),
    ("logits", [-1.0, 2.5, 0.3], Outcome(1, None, [-1.0, 2.5, 0.3])),
    ("positive scores not summing to 1", [0.9, 0.8], Outcome(0, None, [0.9, 0.8])),
    ("several int labels", [2, 5], Outcome([2, 5])),
    ("several string labels", ["a", "b"], Outcome(["a", "b"])),
    ("empty list", [], Outcome()),
    ("label and score", {"label": "cat", "score": 0.93}, Outcome("cat", 0.93, [0.93])),
    ("label and raw score", {"label": "cat", "score": 4.2}, Outcome("cat", None, [4.2])),
    ("keys are case-insensitive", {"Label": "cat", "Probability": 0.6}, Outcome("cat", 0.6, [0.6])),
    ("probabilities alone", {"probabilities": [0.2, 0.8]}, Outcome(1, 0.8, [0.2, 0.8])),
    ("probability alone", {"probability": 0.3}, Outcome(0, 0.7, [0.7, 0.3])),
    (
        "probabilities with a vocabulary",
        {"probabilities": [0.2, 0.8], "classes": ["no", "yes"]},
        Outcome("yes", 0.8, [0.2, 0.8]),
    ),
    (
        "label wins over the argmax",
        {"label": "maybe", "probabilities": [0.2, 0.8]},
        Outcome("maybe", 0.8, [0.2, 0.8]),
    ),
    (
        "TensorFlow estimator output",
        {"logistic": [0.8], "probabilities": [0.2, 0.8], "class_ids": [1], "classes": ["1"], "logits": [1.38]},
        Outcome(1, 0.8, [0.2, 0.8]),
    ),
    ("a one-entry vocabulary without scores", {"classes": ["1"]}, Outcome("1")),
    ("a one-entry vocabulary with a score", {"classes": ["1"], "score": 0.7}, Outcome("1", 0.7, [0.7])),
    (
        "P(positive) with a two-entry vocabulary",
        {"probability": 0.8, "classes": ["no", "yes"]},
        Outcome("yes", 0.8, [0.2, 0.8]),
    ),
    (
        "a vocabulary that does not align",
        {"probabilities": [0.2, 0.8], "classes": ["a", "b", "c"]},
        Outcome(1, 0.8, [0.2, 0.8]),
    ),
    ("prediction key alone is read by the rules", {"prediction": 0.7}, Outcome(1, 0.7, [0.3, 0.7])),
    ("label-to-probability object", {"cat": 0.1, "dog": 0.9}, Outcome("dog", 0.9, [0.1, 0.9])),
    ("single unknown member", {"output_0": [0.4, 0.6]}, Outcome(1, 0.6, [0.4, 0.6])),
    (
        "several unknown members",
        {"out_label": "b", "out_probs": [0.3, 0.7]},
        Outcome("b", 0.7, [0.3, 0.7]),
    ),
    ("several unknown numbers, not probabilities", {"lo": 2.5, "hi": 7.5}, Outcome({"lo": 2.5, "hi": 7.5})),
    ("several unknown floats in [0, 1]", {"toxic": 0.6, "insult": 0.7}, Outcome({"toxic": 0.6, "insult": 0.7})),
    ("several unknown members with a label", {"out_a": [3], "out_b": 1.5}, Outcome(3)),
    ("empty object", {}, Outcome()),
    (
        "top-k label/score list",
        [{"label": "POSITIVE", "score": 0.25}, {"label": "NEGATIVE", "score": 0.75}],
        Outcome("NEGATIVE", 0.75, [0.25, 0.75]),
    ),
    ("one label/score object in a list", [{"label": "POSITIVE", "score": 0.99}], Outcome("POSITIVE", 0.99, [0.99])),
    ("nested lists are kept", [[1, 2], [3, 4]], Outcome([[1, 2], [3, 4]])),
]


@pytest.mark.parametrize(("value", "expected"), [(v, e) for _, v, e in CASES], ids=[name for name, _, _ in CASES])
def test_interpret(value: Any, expected: Outcome) -> None:
    outcome = interpret(value)
    assert outcome.prediction == expected.prediction
    assert outcome.confidence == (None if expected.confidence is None else pytest.approx(expected.confidence))
    assert outcome.scores == (None if expected.scores is None else pytest.approx(expected.scores))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_is_regression(value: float) -> None:
    outcome = interpret(value)
    assert outcome.confidence is None and outcome.scores is None
    assert outcome.prediction is value


def test_nan_never_wins_the_argmax() -> None:
    outcome = interpret([math.nan, 0.5, 2.0])
    assert outcome.prediction == 2 and outcome.confidence is None


def test_all_nan_scores_have_no_argmax() -> None:
    assert interpret([math.nan, math.nan]).prediction is None


def test_confidence_is_always_a_probability() -> None:
    values: list[Any] = [
        3.7,
        [5.0, 1.0],
        {"label": "x", "score": -3.0},
        [{"label": "a", "score": 7.0}, {"label": "b", "score": 1.0}],
        {"a": 0.6, "b": 0.6},
    ]
    for value in values:
        assert interpret(value).confidence is None, value


# SIDECAR_TASK=regression: rule 3 does not apply, a number is the predicted value wherever it sits.
REGRESSION: list[tuple[str, Any, Outcome]] = [
    ("a float in [0, 1] is the value", 0.8, Outcome(0.8)),
    ("an int is the value", 3, Outcome(3.0)),
    ("nested one-element lists", [[0.25]], Outcome(0.25)),
    ("an object's label member", {"prediction": 0.7}, Outcome(0.7)),
    ("a single-member object", {"y": [0.1]}, Outcome(0.1)),
    ("outside [0, 1] as before", 101.5, Outcome(101.5)),
    # What is not a number is read by the usual rules.
    ("a label string", "cat", Outcome("cat")),
    ("a vector is not one value", [0.2, 0.8], Outcome(1, 0.8, [0.2, 0.8])),
    ("a bool is a class", True, Outcome(True)),
]


@pytest.mark.parametrize(("value", "expected"), [case[1:] for case in REGRESSION], ids=[c[0] for c in REGRESSION])
def test_interpret_for_regression(value: Any, expected: Outcome) -> None:
    assert interpret(value, regression=True) == expected
