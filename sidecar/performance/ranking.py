"""NDCG@k, MRR@k and MAP@k of a ranker, weighted by 1/p.

**Input.** One row is one query. The candidate scores are the row's
``scores`` (the protocol adapters put a per-row list of floats there), or its
``prediction`` when that is a list of numbers and there are no scores. The
label is the graded relevance of each candidate, a list of non-negative
numbers in the same candidate order and of the same length; a candidate is
relevant when its relevance is above 0. Values must be JSON numbers (Python
``int`` or ``float``, not booleans); a row whose lists differ in length, or
hold anything else, a non-finite value or a negative relevance, is left out
and counted.

With ``k`` = ``SIDECAR_RANKING_K``, per query, candidates ranked by score,
highest first:

- **NDCG@k** is scikit-learn's ``ndcg_score(relevance, scores, k=k)``: linear
  gains, a ``1 / log2(rank + 1)`` discount over the first k ranks, tied scores
  sharing the average gain of their run (``ignore_ties=False``), divided by the
  DCG of the ideal order.
- **MRR@k**: 1 / rank of the first relevant candidate within the first k, else 0.
- **MAP@k**: ``AP@k = Σ_{i ≤ k} P@i · rel_i / min(k, R)``, with ``rel_i`` 1 when
  rank i is relevant, ``P@i`` the share of relevant candidates among the
  first i and R the relevant candidates of the query.

For MRR and MAP, tied scores keep the candidate order. A query without a
relevant candidate scores 0 on all three, as in ``ndcg_score``. Each metric
is the weighted mean over queries.

Usage::

    ndcg, reciprocal_rank, average_precision = query_scores(relevance, scores, k=10)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar.performance.rows import JoinedRow
from sidecar.performance.snapshot import MetricResult, measure
from sidecar.performance.task import PerformanceConfig

__all__ = ["query_scores", "ranking_metrics"]

Floats = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def query_scores(relevance: Matrix, scores: Matrix, k: int) -> tuple[Floats, Floats, Floats]:
    """Per query (row), NDCG@k, reciprocal rank@k and AP@k; every row has the same number of candidates."""
    rows, width = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    gains = np.take_along_axis(relevance, order, axis=1)
    discount = 1.0 / np.log2(np.arange(width) + 2.0)
    discount[k:] = 0.0

    # Tied scores share their run's mean gain. Runs are numbered across the
    # flattened matrix; each row's first cell starts a run, so none spans two rows.
    starts = np.ones((rows, width), dtype=bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    run = np.cumsum(starts.ravel()) - 1
    mean_gain = np.bincount(run, weights=gains.ravel()) / np.bincount(run)
    dcg = mean_gain[run].reshape(rows, width) @ discount
    ideal = -np.sort(-relevance, axis=1) @ discount
    ndcg = np.divide(dcg, ideal, out=np.zeros(rows), where=ideal > 0)

    relevant = (gains > 0)[:, :k]
    found = relevant.any(axis=1)
    reciprocal_rank = np.where(found, 1.0 / (relevant.argmax(axis=1) + 1.0), 0.0)
    precision_at = np.cumsum(relevant, axis=1) / np.arange(1.0, relevant.shape[1] + 1.0)
    cap = np.minimum((relevance > 0).sum(axis=1), k).astype(np.float64)
    average_precision = np.divide((precision_at * relevant).sum(axis=1), cap, out=np.zeros(rows), where=cap > 0)
    return ndcg, reciprocal_rank, average_precision


def ranking_metrics(labelled: Sequence[JoinedRow], config: PerformanceConfig) -> tuple[MetricResult, ...]:
    """NDCG@k, MRR@k and MAP@k over the labelled rows (queries) of one variant."""
    candidates = [row.prediction if row.scores is None else row.scores for row in labelled]
    labels = [row.label for row in labelled]
    widths = np.fromiter(
        (_width(scores, label) for scores, label in zip(candidates, labels, strict=True)),
        dtype=np.intp,
        count=len(labelled),
    )
    all_weights = np.fromiter((row.weight for row in labelled), dtype=np.float64, count=len(labelled))
    # Queries are grouped by candidate count, so each group is one dense matrix.
    parts: list[tuple[Floats, Floats, Floats, Floats]] = []
    for width in np.unique(widths[widths > 0]).tolist():
        chosen = np.flatnonzero(widths == width).tolist()
        relevance, numeric_labels = _matrix([labels[i] for i in chosen], width)
        scores, numeric_scores = _matrix([candidates[i] for i in chosen], width)
        valid = (
            numeric_labels
            & numeric_scores
            & (np.isfinite(scores) & np.isfinite(relevance) & (relevance >= 0)).all(axis=1)
        )
        parts.append((*query_scores(relevance[valid], scores[valid], config.ranking_k), all_weights[chosen][valid]))
    ndcg, reciprocal_rank, average_precision, weights = (
        np.concatenate([part[i] for part in parts]) if parts else np.zeros(0) for i in range(4)
    )
    n, weighted = len(weights), float(weights.sum())

    def metric(name: str, values: Floats) -> MetricResult:
        return measure(
            name,
            n,
            weighted,
            excluded=len(labelled) - n,
            min_labels=config.min_labels,
            value=lambda: float(np.average(values, weights=weights)),
        )

    return metric("ndcg", ndcg), metric("mrr", reciprocal_rank), metric("map", average_precision)


def _width(scores: Any, label: Any) -> int:
    """The candidate count if both are lists of it, else 0."""
    if isinstance(scores, list | tuple) and isinstance(label, list) and len(scores) == len(label):
        return len(label)
    return 0


def _matrix(lists: list[Sequence[Any]], width: int) -> tuple[Matrix, Bools]:
    """Lists of ``width`` values as a float matrix, and which of them hold only numbers (booleans are not)."""
    # One pass over the value types of the whole group; row by row only when something else is there.
    if {type(value) for values in lists for value in values} <= {int, float}:
        return np.array(lists, dtype=np.float64).reshape(-1, width), np.ones(len(lists), dtype=np.bool_)
    numeric = [all(type(value) in (int, float) for value in values) for values in lists]
    rows = [values if ok else [0.0] * width for values, ok in zip(lists, numeric, strict=True)]
    return np.array(rows, dtype=np.float64).reshape(-1, width), np.array(numeric, dtype=np.bool_)
