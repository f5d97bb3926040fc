"""The distribution of per-request differences between the challenger's numbers and control's.

For each paired row with a number on both sides, ``d = challenger − control``
(a regression's predicted values, or a classifier's confidences): the
summary a reader needs to see how far apart the two models are, and in
which direction. The quantiles are numpy's linear ones (``np.quantile``,
Hyndman and Fan's type 7, as R's default and pandas' are).

Usage::

    summary = differences(control_values, challenger_values)
    summary.mean, summary.mean_absolute, summary.p95
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["QUANTILES", "Differences", "differences"]

# The quantiles reported, as (name, q).
QUANTILES: Final = (("p05", 0.05), ("p50", 0.5), ("p95", 0.95))


@dataclass(frozen=True, slots=True)
class Differences:
    """``n`` paired differences (challenger − control): mean, standard deviation (ddof 1), mean absolute,
    quantiles; NaN where undefined (no rows, or one for the deviation).

    Usage::

        Differences(n=3, mean=0.1, standard_deviation=0.2, mean_absolute=0.2, p05=-0.1, p50=0.1, p95=0.3)
    """

    n: int
    mean: float
    standard_deviation: float
    mean_absolute: float
    p05: float
    p50: float
    p95: float


def differences(control: npt.NDArray[np.float64], challenger: npt.NDArray[np.float64]) -> Differences:
    """Summarise ``challenger − control`` over the rows where both are numbers (not NaN)."""
    d = challenger - control
    d = d[~np.isnan(d)]
    n = int(d.size)
    if n == 0:
        return Differences(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    p05, p50, p95 = (float(q) for q in np.quantile(d, [q for _, q in QUANTILES]))
    deviation = float(d.std(ddof=1)) if n > 1 else math.nan
    return Differences(n, float(d.mean()), deviation, float(np.abs(d).mean()), p05, p50, p95)
