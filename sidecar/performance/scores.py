"""AUC-ROC and log loss from the score vectors, weighted by 1/p.

**Which class each score belongs to.** With ``SIDECAR_CLASSES`` configured,
``scores[i]`` is the score of ``classes[i]`` and every vector must have
``len(classes)`` entries. Otherwise, when every label is a non-negative
integer, ``scores[i]`` is the score of class ``i``, and ``k`` is the most
common vector length among the labelled rows; the protocol adapters read a
probability vector's prediction as its argmax index, so this is the usual
case. Otherwise the mapping cannot be known (scikit-learn would assume sorted
class names, a silent guess) and both metrics are ``"unavailable"`` with the
reason.

A labelled row is used when its label is one of the ``k`` classes and its
score vector has ``k`` finite entries; the others are left out and counted.

- **AUC-ROC**, binary (``positive_label`` set): the positive class's score
  against ``label == positive``, as ``roc_auc_score(y == pos, scores[:, i],
  sample_weight=w)``. Macro (no positive label): the unweighted mean of the
  ``k`` one-vs-rest AUCs, as ``roc_auc_score(y, scores, multi_class="ovr",
  average="macro", labels=classes, sample_weight=w)``. Tied scores count one
  half (the trapezoidal ROC curve). A class without labels in the window
  makes its one-vs-rest AUC, and so the metric, undefined. Unlike
  scikit-learn, multiclass scores need not sum to 1: AUC only ranks them.
- **Log loss**: ``Σ w · −ln p(label) / Σ w`` with ``p`` clipped to
  ``[EPS, 1 − EPS]``, ``EPS`` the float64 machine epsilon, and no
  renormalisation, as ``log_loss(y, scores, labels=classes,
  sample_weight=w)``. Every score used must lie in ``[0, 1]``.

Usage::

    binary_auc(labels == 1, scores[:, 1], weights)   # 0.91
    log_loss(codes, scores, weights)                 # 0.34
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from sidecar.performance.rows import JoinedRow
from sidecar.performance.snapshot import MetricResult, Undefined, measure, unavailable
from sidecar.performance.task import PerformanceConfig

__all__ = ["EPS", "binary_auc", "ovr_auc", "log_loss", "class_order", "probability_metrics"]

EPS = float(np.finfo(np.float64).eps)

Codes = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]


def binary_auc(positive: Bools, score: Floats, weights: Floats) -> float | None:
    """Weighted ROC AUC; None when the rows hold only one of the two classes.

    The area is the weighted share of (positive, negative) pairs the score
    orders correctly, ties counting one half: one sort, then sums per
    distinct score.
    """
    if positive.all() or not positive.any():
        return None
    order = np.argsort(score)  # ties are summed per distinct score, so their order does not matter
    ranked = score[order]
    positive_weight = np.where(positive[order], weights[order], 0.0)
    negative_weight = np.where(positive[order], 0.0, weights[order])
    starts = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1])))
    positives = np.add.reduceat(positive_weight, starts)
    negatives = np.add.reduceat(negative_weight, starts)
    below = np.cumsum(negatives) - negatives
    return float(np.sum(positives * (below + 0.5 * negatives)) / (positives.sum() * negatives.sum()))


def ovr_auc(codes: Codes, scores: Matrix, weights: Floats) -> float | None:
    """Macro one-vs-rest AUC over the columns of ``scores``; None if any class's AUC is undefined."""
    columns = np.ascontiguousarray(scores.T)  # a contiguous column sorts several times faster than a strided one
    areas = [binary_auc(codes == column, columns[column], weights) for column in range(len(columns))]
    defined = [area for area in areas if area is not None]
    return float(np.mean(defined)) if len(defined) == len(areas) else None


def log_loss(codes: Codes, scores: Matrix, weights: Floats) -> float:
    """Weighted mean of −ln p(label), with p clipped to [EPS, 1 − EPS]."""
    probability = np.clip(scores[np.arange(len(codes)), codes], EPS, 1.0 - EPS)
    return float(np.average(-np.log(probability), weights=weights))


def class_order(config: PerformanceConfig, label_keys: Iterable[str], k: int) -> tuple[str, ...] | Undefined:
    """The class of each score position, or why it cannot be known; ``k`` is the usual vector length."""
    if config.classes is not None:
        return config.classes
    # "7" but not "07", "-1" or "٣": only the text an integer 0..k-1 prints as.
    if not all(key.isascii() and key.isdigit() and str(int(key)) == key for key in label_keys):
        return Undefined(
            "cannot tell which score belongs to which class: the labels are not the integers 0..k-1, "
            "so the classes must be configured (SIDECAR_CLASSES)"
        )
    if k < 2:
        return Undefined("the score vectors have a single entry: AUC and log loss need one score per class")
    return tuple(str(i) for i in range(k))


def probability_metrics(
    labelled: Sequence[JoinedRow], labels: Sequence[str | None], all_weights: Floats, config: PerformanceConfig
) -> tuple[MetricResult, MetricResult]:
    """AUC-ROC and log loss over the labelled rows of one variant, given their class keys and weights."""
    lengths = np.fromiter(
        (0 if row.scores is None else len(row.scores) for row in labelled), dtype=np.intp, count=len(labelled)
    )
    candidate = (lengths > 0) & np.fromiter((key is not None for key in labels), dtype=np.bool_, count=len(labels))
    if not candidate.any():
        return _both_unavailable("no labelled prediction carried a score vector", len(labelled))
    # Distinct labels only: the integer check is per class, not per row.
    distinct = {key for key, keep in zip(labels, candidate.tolist(), strict=True) if keep and key is not None}
    order = class_order(config, distinct, int(np.bincount(lengths[candidate]).argmax()))
    if isinstance(order, Undefined):
        return _both_unavailable(order.reason, len(labelled))
    index: dict[str | None, int] = {name: code for code, name in enumerate(order)}
    all_codes = np.fromiter((index.get(key, -1) for key in labels), dtype=np.intp, count=len(labels))
    selected = (all_codes >= 0) & (lengths == len(order))
    chosen = [row.scores for row, keep in zip(labelled, selected.tolist(), strict=True) if keep]
    matrix = np.array(chosen, dtype=np.float64).reshape(-1, len(order))
    finite = np.isfinite(matrix).all(axis=1)
    matrix = matrix[finite]
    codes, weights = all_codes[selected][finite], all_weights[selected][finite]
    n, weighted, excluded = len(codes), float(weights.sum()), len(labelled) - len(codes)

    def auc() -> float | Undefined:
        if config.positive_label is not None:
            if config.positive_label not in index:
                return Undefined(f"the positive label {config.positive_label!r} is not one of the score classes")
            column = index[config.positive_label]
            area = binary_auc(codes == column, matrix[:, column], weights)
            return Undefined("only one class among the labels: AUC is undefined") if area is None else area
        area = ovr_auc(codes, matrix, weights)
        if area is None:
            missing = [order[code] for code in np.flatnonzero(np.bincount(codes, minlength=len(order)) == 0)]
            return Undefined(f"no labels of class {', '.join(missing)}: its one-vs-rest AUC is undefined")
        return area

    def loss() -> float | Undefined:
        if (matrix < 0.0).any() or (matrix > 1.0).any():
            return Undefined("the scores are not probabilities: some lie outside [0, 1]")
        return log_loss(codes, matrix, weights)

    return (
        measure("auc_roc", n, weighted, excluded=excluded, min_labels=config.min_labels, value=auc),
        measure("log_loss", n, weighted, excluded=excluded, min_labels=config.min_labels, value=loss),
    )


def _both_unavailable(reason: str, excluded: int) -> tuple[MetricResult, MetricResult]:
    return unavailable("auc_roc", reason, excluded=excluded), unavailable("log_loss", reason, excluded=excluded)
