"""NDCG@k against scikit-learn; MRR@k and MAP@k on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import ndcg_score  # type: ignore[import-untyped]

from sidecar.performance import JoinedRow, PerformanceConfig
from tests.performance.helpers import TOLERANCE, metrics, sampling_weights


def queries(
    relevance: list[list[float]], scores: list[list[float]], weights: list[float] | None = None
) -> list[JoinedRow]:
    return [
        JoinedRow("search", "champion", prediction=None, scores=s, confidence=None, label=r, weight=w)
        for r, s, w in zip(relevance, scores, weights or [1.0] * len(scores), strict=True)
    ]


def config(k: int) -> PerformanceConfig:
    return PerformanceConfig(task="ranking", ranking_k=k, min_labels=1)


@pytest.mark.parametrize("k", [1, 3, 5, 20])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_ndcg_matches_sklearn(seed: int, weighted: bool, k: int) -> None:
    rng = np.random.default_rng(seed)
    relevance = rng.integers(0, 4, (800, 10)).astype(np.float64)
    relevance[:20] = 0.0  # queries without a relevant candidate score 0
    scores = rng.integers(0, 6, (800, 10)).astype(np.float64)  # few values, many ties
    weights = sampling_weights(rng, 800) if weighted else None
    rows = queries(relevance.tolist(), scores.tolist(), None if weights is None else weights.tolist())

    expected = ndcg_score(relevance, scores, k=k, sample_weight=weights)
    assert metrics(rows, config(k))["ndcg"].value == pytest.approx(expected, abs=TOLERANCE)


def test_ndcg_over_queries_of_different_lengths() -> None:
    rng = np.random.default_rng(2)
    short_relevance, short_scores = rng.integers(0, 3, (50, 4)).astype(float), rng.random((50, 4))
    long_relevance, long_scores = rng.integers(0, 3, (70, 12)).astype(float), rng.random((70, 12))
    rows = queries(
        short_relevance.tolist() + long_relevance.tolist(),
        short_scores.tolist() + long_scores.tolist(),
        [2.0] * 50 + [1.0] * 70,
    )

    short = ndcg_score(short_relevance, short_scores, k=5)
    long = ndcg_score(long_relevance, long_scores, k=5)
    assert metrics(rows, config(5))["ndcg"].value == pytest.approx((100 * short + 70 * long) / 170, abs=TOLERANCE)


def test_mrr_and_map_by_hand() -> None:
    # Candidates in ranked order of score; relevance > 0 is relevant.
    rows = queries(
        [[0, 1, 0, 1], [0, 0, 0, 2], [3, 0, 1, 0], [0, 0, 0, 0]],
        [[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6], [0.1, 0.4, 0.3, 0.2], [0.4, 0.3, 0.2, 0.1]],
    )
    # Query 1: relevant at ranks 2 and 4. RR 1/2. AP@3 = (1/2) / min(3, 2) = 1/4.
    # Query 2: relevant at rank 4, beyond k = 3: RR 0, AP 0.
    # Query 3: ranked by score, candidates 1, 2, 3, 0: relevant at ranks 2 and 4. RR 1/2, AP@3 = 1/4.
    # Query 4: nothing relevant: 0 and 0.
    result = metrics(rows, config(3))
    assert result["mrr"].value == pytest.approx((1 / 2 + 0 + 1 / 2 + 0) / 4)
    assert result["map"].value == pytest.approx((1 / 4 + 0 + 1 / 4 + 0) / 4)

    # With k = 4 the whole list counts: AP = (1/2 + 2/4) / 2 for queries 1 and 3, 1/4 for query 2.
    result = metrics(rows, config(4))
    assert result["mrr"].value == pytest.approx((1 / 2 + 1 / 4 + 1 / 2 + 0) / 4)
    assert result["map"].value == pytest.approx((1 / 2 + 1 / 4 + 1 / 2 + 0) / 4)


def test_mrr_and_map_are_weighted_and_ties_keep_candidate_order() -> None:
    rows = queries([[0, 1, 1], [1, 0, 0]], [[0.5, 0.5, 0.5], [0.2, 0.9, 0.1]], weights=[3.0, 1.0])
    # Query 1, all tied: ranks follow the candidate order, relevant at 2 and 3: RR 1/2, AP = (1/2 + 2/3) / 2.
    # Query 2: the relevant candidate ranks second: RR 1/2, AP 1/2.
    result = metrics(rows, config(10))
    assert result["mrr"].value == pytest.approx((3 * 0.5 + 0.5) / 4)
    assert result["map"].value == pytest.approx((3 * (1 / 2 + 2 / 3) / 2 + 0.5) / 4)
    assert result["mrr"].weighted_samples == 4.0


def test_prediction_list_stands_in_for_scores_and_bad_rows_are_excluded() -> None:
    rows = [
        JoinedRow("search", "champion", prediction=[3, 1, 2], scores=None, confidence=None, label=[0, 0, 1]),
        JoinedRow("search", "champion", prediction=["a", "b"], scores=None, confidence=None, label=[1, 0]),
        JoinedRow("search", "champion", prediction=None, scores=[0.1, 0.2], confidence=None, label=[1, 0, 0]),
        JoinedRow("search", "champion", prediction=None, scores=[0.1, float("nan")], confidence=None, label=[1, 0]),
        JoinedRow("search", "champion", prediction=None, scores=[0.1, 0.2], confidence=None, label=[True, 0]),
        JoinedRow("search", "champion", prediction=None, scores=[0.1, 0.2], confidence=None, label=[-1, 2]),
    ]
    result = metrics(rows, config(10))
    assert (result["mrr"].samples, result["mrr"].excluded) == (1, 5)
    assert result["mrr"].value == pytest.approx(1 / 2)  # scores 3, 2, 1: the relevant third candidate ranks second
