"""The model's performance on the reference data, when it has both a target and a prediction column.

Only rows where both are non-null count; ``count`` says how many.

- **Classification** (the target's distribution is categorical): ``accuracy``,
  and ``precision``, ``recall`` and ``f1``: macro averages over every label
  seen in the target or the prediction (scikit-learn's ``average="macro"``;
  a label never predicted has precision 0), or, with ``--positive-label``,
  those of that one label (``average="binary"``). Labels compare by category
  key, so ``1``, ``1.0`` and ``"1"`` are one label.
- **Regression** (numeric target): ``mae`` and ``rmse`` over the rows where
  both are numbers.

The confusion counts are kept per (target, prediction) pair, up to
:data:`PAIR_CAP` distinct pairs; past that only ``accuracy`` is reported (a
target with that many labels is not a classification target).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

import numpy as np

from sidecar.profiling.readers import Column, row_keys
from sidecar.reference import category_key

__all__ = ["PAIR_CAP", "Baseline"]

PAIR_CAP = 100_000


class Baseline:
    """Accumulates target/prediction pairs chunk by chunk.

    Usage::

        baseline = Baseline()
        baseline.add(target=Column(np.array([1.0, 0.0])), prediction=Column(np.array([1.0, 1.0])))
        baseline.metrics("classification")  # {"count": 2.0, "accuracy": 0.5, "precision": ..., ...}
    """

    def __init__(self, positive_label: str | None = None) -> None:
        self.positive_label = positive_label
        self.labelled = 0
        self.correct = 0
        self._pairs: Counter[tuple[str, str]] | None = Counter()
        self._number_pairs: Counter[tuple[float, float]] = Counter()
        self._numbers = 0
        self._abs_error = 0.0
        self._squared_error = 0.0

    def add(self, *, target: Column, prediction: Column) -> None:
        both = np.isfinite(target.numbers) & np.isfinite(prediction.numbers)
        truth, guess = target.numbers[both], prediction.numbers[both]
        if truth.size:
            error = guess - truth
            self._numbers += truth.size
            self._abs_error += float(np.abs(error).sum())
            self._squared_error += float(np.square(error).sum())
        if target.keys is None and prediction.keys is None:
            # All numbers: equal floats are equal keys, so numpy can count them.
            self.labelled += truth.size
            self.correct += int(np.count_nonzero(truth == guess))
            if self._pairs is not None and truth.size:
                pairs, counts = np.unique(np.stack((truth, guess), axis=1), axis=0, return_counts=True)
                self._number_pairs.update(dict(zip(map(tuple, pairs.tolist()), counts.tolist(), strict=True)))
                self._check_cap()
            return
        chunk = Counter(zip(row_keys(target), row_keys(prediction), strict=True))
        for (truth_key, guess_key), count in chunk.items():
            if truth_key is None or guess_key is None:
                continue
            self.labelled += count
            self.correct += count if truth_key == guess_key else 0
            if self._pairs is not None:
                self._pairs[truth_key, guess_key] += count
        self._check_cap()

    def _check_cap(self) -> None:
        if self._pairs is not None and len(self._pairs) + len(self._number_pairs) > PAIR_CAP:
            self._pairs = None
            self._number_pairs.clear()

    def metrics(self, task: Literal["classification", "regression"]) -> dict[str, float]:
        if task == "regression":
            if not self._numbers:
                return {}
            return {
                "count": float(self._numbers),
                "mae": self._abs_error / self._numbers,
                "rmse": math.sqrt(self._squared_error / self._numbers),
            }
        if not self.labelled:
            return {}
        out = {"count": float(self.labelled), "accuracy": self.correct / self.labelled}
        pairs = self._confusion()
        if pairs is not None:
            out.update(_precision_recall(pairs, self.positive_label))
        return out

    def _confusion(self) -> Counter[tuple[str, str]] | None:
        if self._pairs is None:
            return None
        pairs = Counter(self._pairs)
        for (truth, guess), count in self._number_pairs.items():
            pairs[category_key(truth), category_key(guess)] += count
        return pairs

    @property
    def capped(self) -> bool:
        return self._pairs is None


def _precision_recall(pairs: Counter[tuple[str, str]], positive: str | None) -> dict[str, float]:
    predicted: Counter[str] = Counter()
    actual: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for (truth, guess), count in pairs.items():
        actual[truth] += count
        predicted[guess] += count
        if truth == guess:
            hits[truth] += count
    labels = [positive] if positive is not None else sorted(actual.keys() | predicted.keys())
    precision = recall = f1 = 0.0
    for label in labels:
        p = hits[label] / predicted[label] if predicted[label] else 0.0
        r = hits[label] / actual[label] if actual[label] else 0.0
        precision += p
        recall += r
        f1 += 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": precision / len(labels), "recall": recall / len(labels), "f1": f1 / len(labels)}
