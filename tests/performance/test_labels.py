"""Label validation for the HTTP layer, and how class values compare."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.performance import Task, class_key, validate_label


@pytest.mark.parametrize(
    ("value", "key"),
    [(1, "1"), ("1", "1"), (1.0, "1"), (True, "true"), (False, "false"), ("cat", "cat"), (-3, "-3")],
)
def test_class_key(value: Any, key: str) -> None:
    assert class_key(value) == key


@pytest.mark.parametrize("value", [None, "", 1.5, float("nan"), [1], {"a": 1}])
def test_class_key_of_a_non_class(value: Any) -> None:
    assert class_key(value) is None


@pytest.mark.parametrize(
    ("task", "value"),
    [
        ("classification", "cat"),
        ("classification", 3),
        ("classification", True),
        ("classification", 2.0),
        ("regression", 3.5),
        ("regression", -2),
        ("regression", 0),
        ("ranking", [0, 1, 2.5]),
        ("ranking", [0]),
    ],
)
def test_valid(task: Task, value: Any) -> None:
    assert validate_label(task, value) == (True, None)


@pytest.mark.parametrize(
    ("task", "value", "reason"),
    [
        ("classification", None, "a class label must be a string, an integer or a boolean, got null"),
        ("classification", 1.5, "a class label must be a string, an integer or a boolean, got 1.5"),
        ("classification", [1], "a class label must be a string, an integer or a boolean, got a list"),
        ("classification", "", "a class label must not be an empty string"),
        ("regression", "3.5", "a regression label must be a number, got a string"),
        ("regression", True, "a regression label must be a number, got a boolean"),
        ("regression", float("inf"), "a regression label must be finite, got inf"),
        ("regression", {"value": 1}, "a regression label must be a number, got an object"),
        ("ranking", [], "a ranking label must be a non-empty list of relevances, got a list"),
        ("ranking", 3, "a ranking label must be a non-empty list of relevances, got 3"),
        ("ranking", [1, -1], "relevance 1 must be a finite number of at least 0, got -1"),
        ("ranking", [1, "a"], "relevance 1 must be a finite number of at least 0, got a string"),
        ("ranking", [float("nan")], "relevance 0 must be a finite number of at least 0, got nan"),
    ],
)
def test_invalid_names_the_problem(task: Task, value: Any, reason: str) -> None:
    assert validate_label(task, value) == (False, reason)


def test_configured_classes() -> None:
    classes = ("cat", "dog")
    assert validate_label("classification", "dog", classes=classes) == (True, None)
    assert validate_label("classification", "cow", classes=classes) == (
        False,
        "class 'cow' is not one of the configured classes (cat, dog)",
    )
