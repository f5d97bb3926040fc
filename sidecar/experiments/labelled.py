"""The per-request values of the label metrics an experiment compares its arms by.

A label metric (:data:`~.definition.LABEL_METRICS`) is an average over
requests, so each labelled prediction has its own value, and an arm's metric
is their mean. NaN marks a row the metric cannot score, which then counts for
nothing (neither in the mean nor in n):

==============  ===================================================================================
``accuracy``    1 when the prediction is the label, else 0 (classes compared by
                :func:`~sidecar.performance.class_key`)
``precision``   over the rows predicted ``SIDECAR_POSITIVE_LABEL``: 1 when the label is too
``recall``      over the rows labelled ``SIDECAR_POSITIVE_LABEL``: 1 when the prediction is too
``log_loss``    −ln p(label), p the row's score of the label's class, clipped to ``[EPS, 1 − EPS]``
                (:data:`~sidecar.performance.scores.EPS`), the classes in the order
                :func:`~sidecar.performance.scores.class_order` gives; rows with a score
                outside [0, 1] are not scored
``mae``         |prediction − label|
``mse``         (prediction − label)²
``mape``        |prediction − label| / |label|; rows whose label is 0 are not scored
``ndcg``        NDCG@k, reciprocal rank@k and AP@k per query, from
``mrr``, ``map``  :func:`~sidecar.performance.ranking.query_scores`
==============  ===================================================================================

These are the per-row terms of :mod:`sidecar.performance`'s metrics: their
mean weighted by the rows' 1/p is what :func:`sidecar.performance.compute`
reports (``tests/experiments/test_labelled.py`` holds them to it). The
experiment compares arms by the plain mean per analysis unit; the sampling
weights cancel between arms sampled alike.

Usage::

    rows = await store.labelled_exposures(arms, since=start, period_seconds=86400.0, calendar=False)
    values = label_values("accuracy", rows.prediction, rows.scores, rows.label, config)
    sums = unit_sums(rows, values)   # sidecar.store.experiment
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar.experiments.definition import LABEL_METRICS
from sidecar.performance import PerformanceConfig, class_key
from sidecar.performance.ranking import query_scores
from sidecar.performance.scores import EPS, class_order
from sidecar.performance.snapshot import Undefined

__all__ = ["label_problem", "label_values"]

Floats = npt.NDArray[np.float64]

_CLASSIFICATION = ("accuracy", "precision", "recall", "log_loss")
_REGRESSION = ("mae", "mse", "mape")
_RANKING = ("ndcg", "mrr", "map")


def label_problem(metric: str, config: PerformanceConfig) -> str | None:
    """Why ``metric`` cannot be computed for this model's task and settings, or None: for a check at start-up."""
    if metric not in LABEL_METRICS:
        return f"{metric!r} is not a label metric; expected one of {', '.join(LABEL_METRICS)}"
    task = "classification" if metric in _CLASSIFICATION else "regression" if metric in _REGRESSION else "ranking"
    if task != config.task:
        return f"{metric} is a {task} metric, and SIDECAR_TASK is {config.task}"
    if metric in ("precision", "recall") and config.positive_label is None:
        return f"{metric} is over the positive class: set SIDECAR_POSITIVE_LABEL"
    return None


def label_values(
    metric: str,
    prediction: Sequence[Any],
    scores: Sequence[Sequence[float] | None],
    label: Sequence[Any],
    config: PerformanceConfig,
) -> Floats:
    """One value per row (NaN: not scored); all NaN when :func:`label_problem` has a reason."""
    n = len(label)
    if label_problem(metric, config) is not None:
        return np.full(n, math.nan)
    if metric in ("accuracy", "precision", "recall"):
        return _classes(metric, prediction, label, config.positive_label)
    if metric == "log_loss":
        return _log_loss(scores, label, config)
    if metric in _REGRESSION:
        return _errors(metric, prediction, label)
    return _ranking(metric, prediction, scores, label, config.ranking_k)


def _classes(metric: str, prediction: Sequence[Any], label: Sequence[Any], positive: str | None) -> Floats:
    predicted = [class_key(p) for p in prediction]
    actual = [class_key(y) for y in label]
    values = np.full(len(label), math.nan)
    for i, (p, y) in enumerate(zip(predicted, actual, strict=True)):
        if p is None or y is None:
            continue
        if metric == "accuracy":
            values[i] = float(p == y)
        elif metric == "precision" and p == positive:
            values[i] = float(y == positive)
        elif metric == "recall" and y == positive:
            values[i] = float(p == positive)
    return values


def _log_loss(scores: Sequence[Sequence[float] | None], label: Sequence[Any], config: PerformanceConfig) -> Floats:
    values = np.full(len(label), math.nan)
    keys = [class_key(y) for y in label]
    lengths = [0 if s is None else len(s) for s in scores]
    scored = [i for i, (key, length) in enumerate(zip(keys, lengths, strict=True)) if key is not None and length]
    if not scored:
        return values
    usual = int(np.bincount([lengths[i] for i in scored]).argmax())
    order = class_order(config, {key for i in scored if (key := keys[i]) is not None}, usual)
    if isinstance(order, Undefined):
        return values
    index = {name: code for code, name in enumerate(order)}
    for i in scored:
        row = scores[i]
        code = index.get(keys[i] or "")
        if code is None or row is None or len(row) != len(order):
            continue
        vector = np.asarray(row, dtype=np.float64)
        if not np.isfinite(vector).all() or (vector < 0.0).any() or (vector > 1.0).any():
            continue
        values[i] = -math.log(min(max(float(vector[code]), EPS), 1.0 - EPS))
    return values


def _errors(metric: str, prediction: Sequence[Any], label: Sequence[Any]) -> Floats:
    predicted = np.fromiter((_number(p) for p in prediction), dtype=np.float64, count=len(prediction))
    actual = np.fromiter((_number(y) for y in label), dtype=np.float64, count=len(label))
    error = predicted - actual
    if metric == "mae":
        return np.abs(error)
    if metric == "mse":
        return error * error
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(actual != 0.0, np.abs(error) / np.abs(actual), math.nan)


def _ranking(
    metric: str, prediction: Sequence[Any], scores: Sequence[Sequence[float] | None], label: Sequence[Any], k: int
) -> Floats:
    values = np.full(len(label), math.nan)
    # The candidates' scores are the row's scores, or its prediction when that is a list of numbers.
    candidates = [p if s is None else s for p, s in zip(prediction, scores, strict=True)]
    by_width: dict[int, list[int]] = {}
    for i, (candidate, relevance) in enumerate(zip(candidates, label, strict=True)):
        if _numbers(candidate) and _numbers(relevance) and len(candidate) == len(relevance) and len(relevance) > 0:
            if min(relevance) >= 0:
                by_width.setdefault(len(relevance), []).append(i)
    column = _RANKING.index(metric)
    for rows in by_width.values():
        relevance = np.array([label[i] for i in rows], dtype=np.float64)
        ranked = np.array([candidates[i] for i in rows], dtype=np.float64)
        values[rows] = query_scores(relevance, ranked, k)[column]
    return values


def _number(value: Any) -> float:
    """The value as a float if it is a finite number (not a boolean), else NaN: regression's rule."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.nan
    return float(value)


def _numbers(value: Any) -> bool:
    """A list of finite numbers (not booleans): what a ranking row's scores and relevances must be."""
    return isinstance(value, list) and all(not math.isnan(_number(v)) for v in value)
