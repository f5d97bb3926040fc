"""AUC-ROC and log loss against scikit-learn, and how score positions map to classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score  # type: ignore[import-untyped]

from sidecar.performance import PerformanceConfig
from sidecar.performance.scores import binary_auc
from tests.performance.helpers import TOLERANCE, calibrated, metrics, rows, sampling_weights

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_binary_matches_sklearn(seed: int, weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    # Two decimals, so many scores tie: ties count one half on both sides.
    positive = np.round(rng.beta(2, 2, 3000), 2)
    labels = (rng.random(3000) < positive).astype(int)
    scores = np.column_stack([1 - positive, positive])
    weights = sampling_weights(rng, 3000) if weighted else None
    result = metrics(
        rows(labels.tolist(), (positive >= 0.5).astype(int).tolist(), scores=scores.tolist(), weights=weights),
        PerformanceConfig(positive_label="1", min_labels=1),
    )

    expected_auc = roc_auc_score(labels, positive, sample_weight=weights)
    assert result["auc_roc"].value == pytest.approx(expected_auc, abs=TOLERANCE)
    expected_loss = log_loss(labels, scores, labels=[0, 1], sample_weight=weights)
    assert result["log_loss"].value == pytest.approx(expected_loss, abs=TOLERANCE)
    assert result["auc_roc"].samples == 3000


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_ovr_macro_matches_sklearn(seed: int, weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    probabilities, labels = calibrated(rng, 3000, 4)
    weights = sampling_weights(rng, 3000) if weighted else None
    result = metrics(
        rows(labels.tolist(), probabilities.argmax(axis=1).tolist(), scores=probabilities.tolist(), weights=weights),
        PerformanceConfig(min_labels=1),
    )

    expected_auc = roc_auc_score(
        labels, probabilities, multi_class="ovr", average="macro", labels=[0, 1, 2, 3], sample_weight=weights
    )
    assert result["auc_roc"].value == pytest.approx(expected_auc, abs=TOLERANCE)
    expected_loss = log_loss(labels, probabilities, labels=[0, 1, 2, 3], sample_weight=weights)
    assert result["log_loss"].value == pytest.approx(expected_loss, abs=TOLERANCE)


def test_configured_classes_map_score_positions() -> None:
    rng = np.random.default_rng(4)
    probabilities, codes = calibrated(rng, 2000, 3)
    classes = ("dog", "cat", "bird")  # the model's output order, deliberately not sorted
    labels = np.array(classes)[codes]
    weights = sampling_weights(rng, 2000)
    result = metrics(
        rows(labels.tolist(), labels.tolist(), scores=probabilities.tolist(), weights=weights),
        PerformanceConfig(classes=classes, min_labels=1),
    )

    # scikit-learn wants sorted labels, so its columns are permuted to bird, cat, dog.
    permuted = probabilities[:, [2, 1, 0]]
    expected_auc = roc_auc_score(
        labels, permuted, multi_class="ovr", labels=["bird", "cat", "dog"], sample_weight=weights
    )
    assert result["auc_roc"].value == pytest.approx(expected_auc, abs=TOLERANCE)
    expected_loss = log_loss(labels, permuted, labels=["bird", "cat", "dog"], sample_weight=weights)
    assert result["log_loss"].value == pytest.approx(expected_loss, abs=TOLERANCE)


def test_probabilities_are_clipped_like_sklearn() -> None:
    scores = [[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]]
    result = metrics(rows([1, 1, 0], [0, 1, 1], scores=scores), PerformanceConfig(min_labels=1))
    assert result["log_loss"].value == pytest.approx(log_loss([1, 1, 0], scores, labels=[0, 1]), abs=TOLERANCE)
    assert result["log_loss"].value == pytest.approx((-np.log(np.finfo(float).eps) + 0 - np.log(0.3)) / 3)


def test_heavy_ties() -> None:
    rng = np.random.default_rng(5)
    score = rng.integers(0, 4, 500).astype(np.float64)
    positive = rng.random(500) < score / 4
    weights = sampling_weights(rng, 500)
    assert binary_auc(positive, score, weights) == pytest.approx(
        roc_auc_score(positive, score, sample_weight=weights), abs=TOLERANCE
    )
    assert binary_auc(positive, np.zeros(500), weights) == pytest.approx(0.5)


def test_single_class_makes_auc_unavailable_with_a_reason() -> None:
    result = metrics(
        rows([1, 1, 1], [1, 1, 0], scores=[[0.2, 0.8], [0.4, 0.6], [0.7, 0.3]]),
        PerformanceConfig(positive_label="1", min_labels=1),
    )
    assert result["auc_roc"].status == "unavailable"
    assert result["auc_roc"].value is None
    assert result["auc_roc"].reason == "only one class among the labels: AUC is undefined"
    assert result["log_loss"].status == "ok"  # still defined with one class


def test_multiclass_missing_class_is_named() -> None:
    scores = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]]
    result = metrics(rows([0, 1, 0], [0, 1, 0], scores=scores), PerformanceConfig(min_labels=1))
    assert result["auc_roc"].status == "unavailable"
    assert result["auc_roc"].reason == "no labels of class 2: its one-vs-rest AUC is undefined"


def test_string_labels_without_classes_cannot_be_mapped() -> None:
    result = metrics(
        rows(["cat", "dog"], ["cat", "cat"], scores=[[0.9, 0.1], [0.6, 0.4]]), PerformanceConfig(min_labels=1)
    )
    for name in ("auc_roc", "log_loss"):
        reason = result[name].reason
        assert result[name].status == "unavailable"
        assert reason is not None and "SIDECAR_CLASSES" in reason


def test_labels_that_only_look_like_integers_cannot_be_mapped() -> None:
    result = metrics(rows(["0", "01"], [0, 1], scores=[[0.9, 0.1], [0.6, 0.4]]), PerformanceConfig(min_labels=1))
    assert result["auc_roc"].status == "unavailable"


def test_no_score_vectors() -> None:
    result = metrics(rows([0, 1], [0, 1]), PerformanceConfig(min_labels=1))
    assert result["auc_roc"].status == "unavailable"
    assert result["auc_roc"].reason == "no labelled prediction carried a score vector"
    assert result["auc_roc"].excluded == 2


def test_rows_with_other_vector_lengths_are_excluded_and_counted() -> None:
    scores = [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.93], [0.1, float("nan")]]
    result = metrics(rows([0, 1, 0, 1, 1], [0, 1, 1, 0, 1], scores=scores), PerformanceConfig(min_labels=1))
    assert result["auc_roc"].samples == 3
    assert result["auc_roc"].excluded == 2
    assert result["auc_roc"].value == pytest.approx(roc_auc_score([0, 1, 0], [0.1, 0.8, 0.7]))


def test_raw_scores_give_auc_but_no_log_loss() -> None:
    logits = [[2.0, -1.0], [-0.5, 1.5], [0.3, 0.1], [-2.0, 3.0]]
    result = metrics(
        rows([0, 1, 1, 1], [0, 1, 0, 1], scores=logits), PerformanceConfig(positive_label="1", min_labels=1)
    )
    assert result["auc_roc"].value == pytest.approx(roc_auc_score([0, 1, 1, 1], [-1.0, 1.5, 0.1, 3.0]))
    assert result["log_loss"].status == "unavailable"
    assert result["log_loss"].reason == "the scores are not probabilities: some lie outside [0, 1]"
