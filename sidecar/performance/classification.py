"""Accuracy, precision, recall and F1 of a classifier, weighted by 1/p.

The definitions are scikit-learn's with ``sample_weight``:

- **binary** (``positive_label`` set): the positive class against all others,
  i.e. ``precision_score(y == pos, p == pos, pos_label=True)``; with exactly
  two classes this is ``average="binary"`` with ``pos_label=pos``;
- **macro** (no positive label): the unweighted mean of the per-class values
  over the classes present in labels ∪ predictions, as ``average="macro"``
  with the default ``labels=None``. F1 is the mean of per-class F1, not the
  F1 of the mean precision and recall.

Zero division follows ``zero_division=np.nan``: a precision or recall that
is 0/0 (no predicted, or no actual, member of a class) is undefined. In a
macro average it is left out of the mean; a binary metric that is undefined
reports ``"unavailable"`` with the reason. scikit-learn's default
(``"warn"``, counted as 0) would drop binary recall to 0 in any window
without a positive label, which looks like a collapse and fires alerts.

Usage::

    p, r, f1 = class_scores(y_true, y_pred, weights, n_classes=3)
    macro_f1 = float(np.nanmean(f1))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from sidecar.performance.labels import class_key
from sidecar.performance.rows import JoinedRow
from sidecar.performance.scores import probability_metrics
from sidecar.performance.snapshot import MetricResult, Undefined, measure
from sidecar.performance.task import PerformanceConfig

__all__ = ["accuracy", "class_scores", "classification_metrics"]

Codes = npt.NDArray[np.intp]
Floats = npt.NDArray[np.float64]


def accuracy(y_true: Codes, y_pred: Codes, weights: Floats) -> float:
    """The weighted share of rows whose prediction is the label."""
    return float(np.sum(weights[y_true == y_pred]) / np.sum(weights))


def class_scores(y_true: Codes, y_pred: Codes, weights: Floats, n_classes: int) -> tuple[Floats, Floats, Floats]:
    """Per-class precision, recall and F1 over class codes ``0..n_classes-1``; NaN where 0/0."""
    hit = y_true == y_pred
    true_positive = _sums(y_true[hit], weights[hit], n_classes)
    predicted = _sums(y_pred, weights, n_classes)
    actual = _sums(y_true, weights, n_classes)
    # F1 as 2·tp / (actual + predicted), as scikit-learn computes it: it needs no
    # precision or recall, so it is defined whenever the class occurs at all.
    f1 = _divide(2.0 * true_positive, actual + predicted)
    return _divide(true_positive, predicted), _divide(true_positive, actual), f1


def classification_metrics(labelled: Sequence[JoinedRow], config: PerformanceConfig) -> tuple[MetricResult, ...]:
    """Accuracy, precision, recall, F1, AUC-ROC and log loss over the labelled rows of one variant."""
    # Column by column, never a tuple per row: 100,000 small allocations would
    # wake the cyclic garbage collector over every row of the window, again and again.
    labels = [class_key(row.label) for row in labelled]
    predictions = [class_key(row.prediction) for row in labelled]
    all_weights = np.fromiter((row.weight for row in labelled), dtype=np.float64, count=len(labelled))
    classes = dict.fromkeys(labels) | dict.fromkeys(predictions)
    classes.pop(None, None)
    # A class seen only in left-out rows has no counts, so its values are 0/0 and the macro mean skips them.
    vocabulary = {key: code for code, key in enumerate(classes)}
    all_true = np.fromiter((vocabulary.get(key, -1) for key in labels), dtype=np.intp, count=len(labels))
    all_pred = np.fromiter((vocabulary.get(key, -1) for key in predictions), dtype=np.intp, count=len(labels))
    usable = (all_true >= 0) & (all_pred >= 0)
    y_true, y_pred, weights = all_true[usable], all_pred[usable], all_weights[usable]
    n, weighted, excluded = len(y_true), float(weights.sum()), len(labelled) - len(y_true)
    if config.positive_label is None:
        precision, recall, f1 = class_scores(y_true, y_pred, weights, len(vocabulary))
    else:
        # The positive class against the rest: code 1 for it, 0 for any other.
        positive = vocabulary.get(config.positive_label, -1)
        binary = (y_true == positive).astype(np.intp), (y_pred == positive).astype(np.intp)
        precision, recall, f1 = class_scores(*binary, weights, 2)

    def pick(values: Floats, undefined: str) -> float | Undefined:
        if config.positive_label is not None:
            return Undefined(undefined) if np.isnan(values[1]) else float(values[1])
        # Called with at least one row: its label's recall and its prediction's
        # precision are defined, so the mean is never of NaNs alone.
        return float(np.nanmean(values))

    def metric(name: str, value: Callable[[], float | Undefined]) -> MetricResult:
        return measure(name, n, weighted, excluded=excluded, min_labels=config.min_labels, value=value)

    return (
        metric("accuracy", lambda: accuracy(y_true, y_pred, weights)),
        metric("precision", lambda: pick(precision, "no predicted positives: precision is 0/0")),
        metric("recall", lambda: pick(recall, "no positive labels: recall is 0/0")),
        metric("f1", lambda: pick(f1, "no positive labels and no predicted positives: F1 is 0/0")),
        *probability_metrics(labelled, labels, all_weights, config),
    )


def _sums(codes: Codes, weights: Floats, n_classes: int) -> Floats:
    return np.bincount(codes, weights=weights, minlength=n_classes).astype(np.float64)


def _divide(numerator: Floats, denominator: Floats) -> Floats:
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
