"""MAE, MSE, RMSE and MAPE of a regressor, weighted by 1/p.

The definitions are scikit-learn's with ``sample_weight``:
``mean_absolute_error``, ``mean_squared_error``, ``root_mean_squared_error``
(the square root of the weighted MSE) and ``mean_absolute_percentage_error``,
a ratio (0.1 is 10 %), not a percentage. MAPE leaves out the rows whose
target is 0, where the ratio is undefined (scikit-learn divides by machine
epsilon instead, which turns one zero target into an error of ~10¹⁵); the
metric's ``excluded`` counts them. When every target is 0, MAPE is
``"unavailable"``.

A row is used when its label and its prediction are finite numbers (not
booleans); the others are left out and counted.

Usage::

    mae, mse, rmse = errors(y_true, y_pred, weights)
    mape(y_true[y_true != 0], y_pred[y_true != 0], weights[y_true != 0])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar.performance.rows import JoinedRow
from sidecar.performance.snapshot import MetricResult, measure, unavailable
from sidecar.performance.task import PerformanceConfig

__all__ = ["errors", "mape", "regression_metrics"]

Floats = npt.NDArray[np.float64]


def errors(y_true: Floats, y_pred: Floats, weights: Floats) -> tuple[float, float, float]:
    """Weighted MAE, MSE and RMSE."""
    error = y_pred - y_true
    mse = float(np.average(error * error, weights=weights))
    return float(np.average(np.abs(error), weights=weights)), mse, math.sqrt(mse)


def mape(y_true: Floats, y_pred: Floats, weights: Floats) -> float:
    """Weighted mean of |error| / |target|; every target must be non-zero."""
    return float(np.average(np.abs(y_pred - y_true) / np.abs(y_true), weights=weights))


def regression_metrics(labelled: Sequence[JoinedRow], config: PerformanceConfig) -> tuple[MetricResult, ...]:
    """MAE, MSE, RMSE and MAPE over the labelled rows of one variant."""
    # Column by column, never a tuple per row (see :mod:`.classification`); NaN marks a value that is not a number.
    y_true_all = np.fromiter((_number(row.label) for row in labelled), dtype=np.float64, count=len(labelled))
    y_pred_all = np.fromiter((_number(row.prediction) for row in labelled), dtype=np.float64, count=len(labelled))
    weights_all = np.fromiter((row.weight for row in labelled), dtype=np.float64, count=len(labelled))
    usable = ~np.isnan(y_true_all) & ~np.isnan(y_pred_all)
    y_true, y_pred, weights = y_true_all[usable], y_pred_all[usable], weights_all[usable]
    n, weighted, excluded = len(y_true), float(weights.sum()), len(labelled) - len(y_true)
    nonzero = y_true != 0.0

    @functools.cache  # one pass for MAE, MSE and RMSE, and none below the minimum
    def computed() -> tuple[float, float, float]:
        return errors(y_true, y_pred, weights)

    def metric(name: str, index: int) -> MetricResult:
        return measure(
            name, n, weighted, excluded=excluded, min_labels=config.min_labels, value=lambda: computed()[index]
        )

    if n >= config.min_labels and not nonzero.any():
        mape_result = unavailable("mape", f"all {n} targets are 0: MAPE is undefined", excluded=len(labelled))
    else:
        mape_result = measure(
            "mape",
            int(nonzero.sum()),
            float(weights[nonzero].sum()),
            excluded=len(labelled) - int(nonzero.sum()),
            min_labels=config.min_labels,
            value=lambda: mape(y_true[nonzero], y_pred[nonzero], weights[nonzero]),
        )
    return metric("mae", 0), metric("mse", 1), metric("rmse", 2), mape_result


def _number(value: Any) -> float:
    """The value as a float if it is a finite number (not a boolean), else NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.nan
    return float(value)
