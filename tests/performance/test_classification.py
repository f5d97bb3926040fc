"""Accuracy, precision, recall and F1 against scikit-learn, unweighted and with sample_weight."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning  # type: ignore[import-untyped]
from sklearn.metrics import (  # type: ignore[import-untyped]
    accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from sidecar.performance import PerformanceConfig
from tests.performance.helpers import TOLERANCE, metrics, noisy, rows, sampling_weights

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_macro_matches_sklearn(seed: int, weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 3000)
    # Class 4 is only ever predicted: macro runs over labels ∪ predictions, and its recall is 0/0.
    predictions = noisy(rng, labels, 5, hit_rate=0.6)
    weights = sampling_weights(rng, 3000) if weighted else None
    result = metrics(rows(labels.tolist(), predictions.tolist(), weights=weights), PerformanceConfig(min_labels=1))

    average = {"average": "macro", "zero_division": np.nan, "sample_weight": weights}
    assert result["accuracy"].value == pytest.approx(
        accuracy_score(labels, predictions, sample_weight=weights), abs=TOLERANCE
    )
    assert result["precision"].value == pytest.approx(precision_score(labels, predictions, **average), abs=TOLERANCE)
    assert result["recall"].value == pytest.approx(recall_score(labels, predictions, **average), abs=TOLERANCE)
    assert result["f1"].value == pytest.approx(f1_score(labels, predictions, **average), abs=TOLERANCE)
    assert result["accuracy"].samples == 3000
    assert result["accuracy"].weighted_samples == pytest.approx(3000 if weights is None else weights.sum())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_binary_matches_sklearn(seed: int, weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array(["fraud", "ok"]), 3000, p=[0.2, 0.8])
    predictions = np.where(rng.random(3000) < 0.7, labels, rng.choice(np.array(["fraud", "ok"]), 3000))
    weights = sampling_weights(rng, 3000) if weighted else None
    config = PerformanceConfig(positive_label="fraud", min_labels=1)
    result = metrics(rows(labels.tolist(), predictions.tolist(), weights=weights), config)

    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, average="binary", pos_label="fraud", sample_weight=weights
    )
    assert result["accuracy"].value == pytest.approx(
        accuracy_score(labels, predictions, sample_weight=weights), abs=TOLERANCE
    )
    assert result["precision"].value == pytest.approx(precision, abs=TOLERANCE)
    assert result["recall"].value == pytest.approx(recall, abs=TOLERANCE)
    assert result["f1"].value == pytest.approx(f1, abs=TOLERANCE)


def test_binary_with_more_classes_is_positive_against_the_rest() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 2000)
    predictions = noisy(rng, labels, 3, hit_rate=0.5)
    weights = sampling_weights(rng, 2000)
    result = metrics(
        rows(labels.tolist(), predictions.tolist(), weights=weights),
        PerformanceConfig(positive_label="2", min_labels=1),
    )

    binary = {"sample_weight": weights}
    assert result["precision"].value == pytest.approx(
        precision_score(labels == 2, predictions == 2, **binary), abs=TOLERANCE
    )
    assert result["recall"].value == pytest.approx(recall_score(labels == 2, predictions == 2, **binary), abs=TOLERANCE)
    assert result["f1"].value == pytest.approx(f1_score(labels == 2, predictions == 2, **binary), abs=TOLERANCE)
    # Accuracy still compares the classes themselves: 0 for 1 is a miss, although neither is positive.
    assert result["accuracy"].value == pytest.approx(
        accuracy_score(labels, predictions, sample_weight=weights), abs=TOLERANCE
    )


def test_binary_zero_division_is_unavailable_not_zero() -> None:
    labels = [0] * 8
    predictions = [0] * 6 + [1] * 2
    result = metrics(rows(labels, predictions), PerformanceConfig(positive_label="1", min_labels=1))

    assert result["recall"].status == "unavailable"
    assert result["recall"].value is None
    assert result["recall"].reason == "no positive labels: recall is 0/0"
    assert result["precision"].value == 0.0  # two predicted positives, none right: defined, and 0
    assert result["f1"].value == 0.0
    assert np.isnan(recall_score(labels, predictions, zero_division=np.nan))
    # scikit-learn's default would report 0, which looks like a collapse of the model.
    with pytest.warns(UndefinedMetricWarning):
        assert recall_score(labels, predictions) == 0.0


def test_macro_leaves_undefined_classes_out_as_sklearn_nan() -> None:
    # Class "c" is labelled but never predicted: its precision is 0/0.
    labels = ["a", "b", "c", "a", "b", "c"]
    predictions = ["a", "b", "a", "a", "b", "b"]
    result = metrics(rows(labels, predictions), PerformanceConfig(min_labels=1))

    expected = precision_score(labels, predictions, average="macro", zero_division=np.nan)
    assert result["precision"].value == pytest.approx(expected, abs=TOLERANCE)
    assert result["precision"].value == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert result["precision"].value != pytest.approx(
        precision_score(labels, predictions, average="macro", zero_division=0.0)
    )


def test_labels_and_predictions_compare_by_text() -> None:
    # The model predicts ints, the labels arrive as strings, floats and ints.
    result = metrics(rows(["1", 0.0, 1, "0"], [1, 0, 1, 1]), PerformanceConfig(min_labels=1))
    assert result["accuracy"].value == 0.75


def test_rows_without_a_usable_prediction_are_excluded_and_counted() -> None:
    result = metrics(rows([1, 1, 0, 0, 1], [1, None, 0, 2.5, 0]), PerformanceConfig(min_labels=1))
    assert result["accuracy"].samples == 3
    assert result["accuracy"].excluded == 2
    assert result["accuracy"].value == pytest.approx(2 / 3)
