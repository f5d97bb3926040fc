"""MAE, MSE, RMSE and MAPE against scikit-learn, unweighted and with sample_weight."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (  # type: ignore[import-untyped]
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    root_mean_squared_error,
)

from sidecar.performance import PerformanceConfig
from tests.performance.helpers import TOLERANCE, metrics, rows, sampling_weights

CONFIG = PerformanceConfig(task="regression", min_labels=1)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn(seed: int, weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    targets = rng.gamma(2.0, 50.0, 3000)
    targets[:40] = 0.0  # zero targets: left out of MAPE only
    predictions = targets + rng.normal(0.0, 10.0, 3000)
    weights = sampling_weights(rng, 3000) if weighted else None
    result = metrics(rows(targets.tolist(), predictions.tolist(), weights=weights), CONFIG)

    kept = np.s_[40:]
    kept_weights = None if weights is None else weights[kept]
    expected = {
        "mae": mean_absolute_error(targets, predictions, sample_weight=weights),
        "mse": mean_squared_error(targets, predictions, sample_weight=weights),
        "rmse": root_mean_squared_error(targets, predictions, sample_weight=weights),
        "mape": mean_absolute_percentage_error(targets[kept], predictions[kept], sample_weight=kept_weights),
    }
    for name, value in expected.items():
        assert result[name].value == pytest.approx(value, abs=TOLERANCE), name
    assert result["mae"].samples == 3000
    assert (result["mape"].samples, result["mape"].excluded) == (2960, 40)
    if weights is not None:
        assert result["mape"].weighted_samples == pytest.approx(weights[kept].sum())


def test_all_zero_targets_make_mape_unavailable() -> None:
    result = metrics(rows([0.0, 0, 0.0], [1.0, -2.0, 0.5]), CONFIG)
    assert result["mape"].status == "unavailable"
    assert result["mape"].reason == "all 3 targets are 0: MAPE is undefined"
    assert result["mape"].excluded == 3
    assert result["mae"].value == pytest.approx(3.5 / 3)


def test_zero_targets_below_the_minimum_are_insufficient() -> None:
    result = metrics(rows([0.0, 2.0], [1.0, 1.0]), PerformanceConfig(task="regression", min_labels=2))
    assert result["mape"].status == "insufficient_labels"
    assert result["mape"].reason == "1 usable labelled samples, 2 needed (1 labelled rows left out)"
    assert result["mae"].status == "ok"


def test_rows_that_are_not_numbers_are_excluded_and_counted() -> None:
    result = metrics(rows([1.0, 2.0, True, 4.0, 5.0], [1.5, None, 1.0, float("inf"), 4.0]), CONFIG)
    assert (result["mae"].samples, result["mae"].excluded) == (2, 3)
    assert result["mae"].value == pytest.approx(0.75)
