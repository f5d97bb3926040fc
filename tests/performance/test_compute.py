"""Grouping by model and variant, the minimum-labels rule, empty input, and the snapshot's shape."""

from __future__ import annotations

import dataclasses

import pytest

from sidecar.performance import METRICS, TASKS, JoinedRow, PerformanceConfig, Task, compute
from tests.performance.helpers import rows
from tests.records import make_record


def test_one_snapshot_per_model_and_variant() -> None:
    window = (
        rows([1, 0, 1], [1, 0, 0], variant="challenger")
        + rows([1, 1], [1, 1], variant="champion")
        + [JoinedRow("other", "champion", 1, None, None, label=0)]
    )
    snapshots = compute(window, PerformanceConfig(min_labels=1))
    assert [(s.model, s.variant) for s in snapshots] == [
        ("churn", "challenger"),
        ("churn", "champion"),
        ("other", "champion"),
    ]
    assert [s.metric("accuracy").value for s in snapshots] == pytest.approx([2 / 3, 1.0, 0.0])


def test_fewer_labels_than_the_minimum_give_no_value() -> None:
    window = rows([1, 0, 1], [1, 0, 0], scores=[[0.2, 0.8], [0.9, 0.1], [0.6, 0.4]], confidence=[0.8, 0.9, 0.6])
    (snapshot,) = compute(window, PerformanceConfig(positive_label="1", min_labels=4))
    for result in snapshot.metrics:
        if result.name == "estimated_accuracy":
            continue  # estimated from predictions, not labels
        assert result.status == "insufficient_labels", result.name
        assert result.value is None
        assert result.reason == "3 usable labelled samples, 4 needed"
        assert result.samples == 3
    (snapshot,) = compute(window, PerformanceConfig(positive_label="1", min_labels=3))
    assert all(result.status == "ok" for result in snapshot.metrics)


def test_unlabelled_predictions() -> None:
    window = [JoinedRow("churn", "champion", 1, [0.3, 0.7], 0.7) for _ in range(5)]
    (snapshot,) = compute(window, PerformanceConfig(min_labels=1))
    assert (snapshot.predictions, snapshot.labelled) == (5, 0)
    assert snapshot.metric("accuracy").status == "insufficient_labels"
    assert snapshot.metric("estimated_accuracy").value == pytest.approx(0.7)


@pytest.mark.parametrize("task", TASKS)
def test_empty_input(task: Task) -> None:
    assert compute([], PerformanceConfig(task=task)) == ()


@pytest.mark.parametrize("task", TASKS)
def test_metric_names_are_the_task_metrics(task: Task) -> None:
    (snapshot,) = compute([JoinedRow("m", "v", None, None, None)], PerformanceConfig(task=task))
    assert tuple(result.name for result in snapshot.metrics) == METRICS[task]
    with pytest.raises(KeyError):
        snapshot.metric("nope")


def test_snapshot_is_immutable() -> None:
    (snapshot,) = compute(rows([1], [1]), PerformanceConfig(min_labels=1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.labelled = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.metrics[0].value = 0.0  # type: ignore[misc]


def test_row_from_record() -> None:
    record = make_record(
        request_id="r1",
        model_name="churn",
        model_version="3",
        variant="champion",
        prediction=1,
        confidence=0.8,
        scores=[0.2, 0.8],
        probability=0.25,
    )
    assert JoinedRow.from_record(record, label=0) == JoinedRow("churn", "champion", 1, [0.2, 0.8], 0.8, 0, 4.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ranking_k": 0}, "ranking_k must be at least 1, got 0"),
        ({"min_labels": 0}, "min_labels must be at least 1, got 0"),
        ({"classes": ("a",)}, "classes must be two or more distinct values, got ['a']"),
        ({"classes": ("a", "a")}, "classes must be two or more distinct values, got ['a', 'a']"),
        ({"classes": ("a", "b"), "positive_label": "c"}, "positive_label 'c' is not one of the classes"),
    ],
)
def test_config_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        PerformanceConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
