"""What does a performance evaluation cost? Milliseconds to compute every metric over a window.

Performance metrics are recomputed from the window's rows at each
evaluation (:mod:`sidecar.performance.compute`), so the figure that matters
is the time for one window. Each scenario is 100,000 labelled predictions
(``--rows``) of one model variant, with sampling weights 1/p for p from 0.05
to 1, run through :func:`sidecar.performance.compute` from
:class:`JoinedRow` objects, as the evaluator will call it, so the conversion
of Python rows into arrays is in the figure:

- **binary**: accuracy, precision, recall, F1, AUC-ROC and log loss from
  two-entry probability vectors, and the estimated accuracy;
- **10 classes**: the same with macro averages and one-vs-rest AUC over
  10-entry vectors (ten sorts);
- **regression**: MAE, MSE, RMSE and MAPE;
- **ranking**: NDCG@10, MRR@10 and MAP@10 over queries of 10 candidates.

Each figure is the best and the median of several repeats, in CPU time of this
process (``time.process_time``). The evaluator recomputes every
``SIDECAR_EVAL_INTERVAL_SECONDS``, on a worker thread. No figure has a target
yet: there is no baseline in this run to state one as a ratio to, and the
absolute "under 1 second per window" once printed was set on another machine
(docs/architecture.md, "Performance targets").

Usage::

    python -m benchmarks.performance_compute [--rows 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np

from sidecar.performance import JoinedRow, PerformanceConfig, compute

__all__ = ["main"]


def classification_rows(rng: np.random.Generator, n: int, k: int) -> list[JoinedRow]:
    """A calibrated k-class model: labels drawn from its own probability vectors."""
    probabilities = rng.dirichlet(np.full(k, 0.7), n)
    labels = np.minimum((rng.random(n)[:, None] > np.cumsum(probabilities, axis=1)).sum(axis=1), k - 1)
    weights = 1.0 / rng.uniform(0.05, 1.0, n)
    return [
        JoinedRow("bench", "primary", prediction, scores, confidence, label, weight)
        for prediction, scores, confidence, label, weight in zip(
            probabilities.argmax(axis=1).tolist(),
            probabilities.tolist(),
            probabilities.max(axis=1).tolist(),
            labels.tolist(),
            weights.tolist(),
            strict=True,
        )
    ]


def regression_rows(rng: np.random.Generator, n: int) -> list[JoinedRow]:
    targets = np.round(rng.gamma(2.0, 50.0, n), 1)  # rounding leaves some zero targets for MAPE to skip
    predictions = targets + rng.normal(0.0, 10.0, n)
    weights = 1.0 / rng.uniform(0.05, 1.0, n)
    return [
        JoinedRow("bench", "primary", prediction, None, None, label, weight)
        for prediction, label, weight in zip(predictions.tolist(), targets.tolist(), weights.tolist(), strict=True)
    ]


def ranking_rows(rng: np.random.Generator, n: int) -> list[JoinedRow]:
    relevance = rng.integers(0, 4, (n, 10))
    scores = relevance + rng.normal(0.0, 1.5, (n, 10))
    weights = 1.0 / rng.uniform(0.05, 1.0, n)
    return [
        JoinedRow("bench", "primary", None, s, None, r, w)
        for s, r, w in zip(scores.tolist(), relevance.tolist(), weights.tolist(), strict=True)
    ]


def bench(rows: Sequence[JoinedRow], config: PerformanceConfig, repeat: int) -> list[float]:
    """ms per :func:`compute` over ``rows``, one figure per repeat; every metric must come out "ok"."""
    figures = []
    for _ in range(repeat):
        start = time.process_time()
        (snapshot,) = compute(rows, config)
        figures.append((time.process_time() - start) * 1e3)
    failed = [result.name for result in snapshot.metrics if result.status != "ok"]
    if failed:
        raise SystemExit(f"metrics without a value: {failed}")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.performance_compute", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=100_000, help="labelled predictions per window (default 100000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measurement (default 5)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(20261126)
    scenarios = [
        ("binary", classification_rows(rng, args.rows, 2), PerformanceConfig(positive_label="1")),
        ("10 classes", classification_rows(rng, args.rows, 10), PerformanceConfig()),
        ("regression", regression_rows(rng, args.rows), PerformanceConfig(task="regression")),
        ("ranking, 10 candidates", ranking_rows(rng, args.rows), PerformanceConfig(task="ranking")),
    ]
    for name, rows, config in scenarios:
        figures = bench(rows, config, args.repeat)
        print(
            f"{name}, {args.rows:,} labelled rows: best {min(figures):.1f} ms, median {statistics.median(figures):.1f}"
            "  (no target yet)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
