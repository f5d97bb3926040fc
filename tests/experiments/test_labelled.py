"""The per-row values of label metrics are the terms of sidecar.performance's own metrics.

Each metric's weighted mean of the per-row values, over the rows it scores,
must equal what :func:`sidecar.performance.compute` reports for the same rows
with the same 1/p weights: one definition of each metric in the sidecar.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sidecar.experiments.definition import LABEL_METRICS
from sidecar.experiments.labelled import label_problem, label_values
from sidecar.performance import JoinedRow, PerformanceConfig, compute

RNG_SEED = 17


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    scored = np.isfinite(values)
    return float(np.average(values[scored], weights=weights[scored]))


def performance(rows: list[JoinedRow], config: PerformanceConfig, metric: str) -> float:
    [snapshot] = compute(rows, config)
    value = snapshot.metric(metric).value
    assert isinstance(value, float), snapshot.metric(metric)
    return value


def columns(rows: list[JoinedRow]) -> tuple[list[Any], list[Any], list[Any], np.ndarray]:
    weights = np.array([row.weight for row in rows])
    return [r.prediction for r in rows], [r.scores for r in rows], [r.label for r in rows], weights


def classification_rows(rng: np.random.Generator, *, binary: bool) -> list[JoinedRow]:
    classes = ["0", "1"] if binary else ["0", "1", "2"]
    rows = []
    for _ in range(400):
        scores = rng.dirichlet(np.ones(len(classes))).tolist()
        prediction: Any = int(np.argmax(scores)) if rng.random() > 0.1 else classes[int(rng.integers(len(classes)))]
        label: Any = int(rng.integers(len(classes)))
        if rng.random() < 0.03:
            label = 1.0 * label  # 2.0 is class "2", as class_key reads it
        if rng.random() < 0.02:
            prediction = None  # no prediction: not scored by accuracy
        weight = float(rng.choice([1.0, 2.0, 4.0]))
        rows.append(JoinedRow("m", "v", prediction, scores, max(scores), label, weight))
    return rows


@pytest.mark.parametrize("metric", ["accuracy", "log_loss"])
def test_classification_values_average_to_the_performance_metric(metric: str) -> None:
    rows = classification_rows(np.random.default_rng(RNG_SEED), binary=False)
    config = PerformanceConfig(task="classification", min_labels=1)
    prediction, scores, label, weights = columns(rows)
    values = label_values(metric, prediction, scores, label, config)
    assert weighted_mean(values, weights) == pytest.approx(performance(rows, config, metric), rel=1e-12)
    if metric == "accuracy":
        assert set(np.unique(values[np.isfinite(values)])) == {0.0, 1.0}
        assert np.isnan(values).sum() == sum(p is None for p in prediction)


@pytest.mark.parametrize("metric", ["precision", "recall", "accuracy"])
def test_binary_values_average_to_the_performance_metric(metric: str) -> None:
    rows = classification_rows(np.random.default_rng(RNG_SEED + 1), binary=True)
    config = PerformanceConfig(task="classification", positive_label="1", min_labels=1)
    prediction, scores, label, weights = columns(rows)
    values = label_values(metric, prediction, scores, label, config)
    assert weighted_mean(values, weights) == pytest.approx(performance(rows, config, metric), rel=1e-12)
    scored = int(np.isfinite(values).sum())
    if metric == "precision":  # only the rows predicted positive count
        assert scored == sum(p in (1, "1") for p in prediction)


@pytest.mark.parametrize("metric", ["mae", "mse", "mape"])
def test_regression_values_average_to_the_performance_metric(metric: str) -> None:
    rng = np.random.default_rng(RNG_SEED)
    rows = []
    for i in range(300):
        label: Any = float(np.round(rng.normal(10, 3), 2)) if i % 25 else 0.0  # some targets 0: no MAPE for them
        prediction: Any = float(label + rng.normal(0, 1))
        if i % 40 == 7:
            prediction = "n/a"  # not a number: left out
        rows.append(JoinedRow("m", "v", prediction, None, None, label, float(rng.choice([1.0, 3.0]))))
    config = PerformanceConfig(task="regression", min_labels=1)
    prediction, scores, label, weights = columns(rows)
    values = label_values(metric, prediction, scores, label, config)
    assert weighted_mean(values, weights) == pytest.approx(performance(rows, config, metric), rel=1e-12)


@pytest.mark.parametrize("metric", ["ndcg", "mrr", "map"])
def test_ranking_values_average_to_the_performance_metric(metric: str) -> None:
    rng = np.random.default_rng(RNG_SEED)
    rows = []
    for i in range(200):
        width = int(rng.integers(3, 7))
        scores: Any = np.round(rng.random(width), 1).tolist()  # rounded: ties, which NDCG shares out
        relevance: Any = rng.integers(0, 3, width).tolist()
        if i % 30 == 3:
            relevance = relevance[:-1]  # lengths differ: left out
        if i % 30 == 5:
            relevance[0] = -1  # a negative relevance: left out
        rows.append(JoinedRow("m", "v", None, scores, None, relevance, float(rng.choice([1.0, 2.0]))))
    config = PerformanceConfig(task="ranking", ranking_k=3, min_labels=1)
    prediction, scores_, label, weights = columns(rows)
    values = label_values(metric, prediction, scores_, label, config)
    assert int(np.isfinite(values).sum()) == 200 - 14
    assert weighted_mean(values, weights) == pytest.approx(performance(rows, config, metric), rel=1e-12)


def test_log_loss_leaves_out_rows_it_cannot_score() -> None:
    config = PerformanceConfig(task="classification", classes=("cat", "dog"), min_labels=1)
    scores = [[0.2, 0.8], [0.2, 0.8], [1.3, -0.3], [0.5, 0.5, 0.0], None, [0.0, 1.0]]
    labels = ["dog", "bird", "dog", "dog", "dog", "cat"]
    values = label_values("log_loss", [None] * 6, scores, labels, config)
    expected = [-math.log(0.8), math.nan, math.nan, math.nan, math.nan, -math.log(np.finfo(np.float64).eps)]
    np.testing.assert_allclose(values, expected, rtol=1e-15)


@pytest.mark.parametrize(
    ("metric", "config", "problem"),
    [
        ("precision", PerformanceConfig(task="classification"), "set SIDECAR_POSITIVE_LABEL"),
        ("mae", PerformanceConfig(task="classification"), "mae is a regression metric, and SIDECAR_TASK is"),
        ("ndcg", PerformanceConfig(task="regression"), "ndcg is a ranking metric"),
        ("auc_roc", PerformanceConfig(task="classification"), "'auc_roc' is not a label metric"),
    ],
)
def test_a_metric_the_settings_cannot_compute_is_named_and_has_no_values(
    metric: str, config: PerformanceConfig, problem: str
) -> None:
    reason = label_problem(metric, config)
    assert reason is not None and problem in reason
    assert np.isnan(label_values(metric, ["1", "0"], [None, None], ["1", "1"], config)).all()


def test_every_label_metric_of_the_definition_has_values() -> None:
    tasks = {"classification": PerformanceConfig(task="classification", positive_label="1")}
    tasks["regression"] = PerformanceConfig(task="regression")
    tasks["ranking"] = PerformanceConfig(task="ranking")
    for metric in LABEL_METRICS:
        assert sum(label_problem(metric, config) is None for config in tasks.values()) == 1, metric
