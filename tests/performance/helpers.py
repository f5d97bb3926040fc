"""Seeded synthetic data for the performance tests, and rows built from numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar.performance import JoinedRow, MetricResult, PerformanceConfig, compute

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# scikit-learn agrees with our sums to rounding; this is far above rounding and far below any real difference.
TOLERANCE = 1e-9


def rows(
    labels: Sequence[Any],
    predictions: Sequence[Any],
    *,
    scores: Sequence[Sequence[float] | None] | None = None,
    weights: Floats | Sequence[float] | None = None,
    confidence: Sequence[float | None] | None = None,
    variant: str = "champion",
) -> list[JoinedRow]:
    """One row per label, in model ``churn``; numpy inputs become Python values, as the store returns them."""
    n = len(labels)
    return [
        JoinedRow(
            model="churn",
            variant=variant,
            prediction=predictions[i],
            scores=None if scores is None else scores[i],
            confidence=None if confidence is None else confidence[i],
            label=labels[i],
            weight=1.0 if weights is None else weights[i],
        )
        for i in range(n)
    ]


def metrics(rows_: Sequence[JoinedRow], config: PerformanceConfig) -> dict[str, MetricResult]:
    """The metrics of the one (model, variant) among ``rows_``, by name."""
    (snapshot,) = compute(rows_, config)
    return {result.name: result for result in snapshot.metrics}


def sampling_weights(rng: np.random.Generator, n: int) -> Floats:
    """1/p for sampling probabilities from 0.05 to 1, as stratified or importance sampling gives them."""
    return 1.0 / rng.uniform(0.05, 1.0, n)


def calibrated(rng: np.random.Generator, n: int, k: int) -> tuple[Floats, Ints]:
    """Probability vectors and labels drawn from them: a perfectly calibrated k-class model."""
    probabilities = rng.dirichlet(np.full(k, 0.7), n)
    labels = (rng.random(n)[:, None] > np.cumsum(probabilities, axis=1)).sum(axis=1)
    return probabilities, np.minimum(labels, k - 1)


def noisy(rng: np.random.Generator, labels: Ints, k: int, hit_rate: float) -> Ints:
    """Predictions equal to the label with probability ``hit_rate``, else a uniformly random class."""
    return np.where(rng.random(len(labels)) < hit_rate, labels, rng.integers(0, k, len(labels)))
