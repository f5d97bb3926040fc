"""How far the challenger's predictions have shifted from control's: PSI over bins fixed by control's.

Control's predictions are the reference, the way a reference profile is for
drift (:mod:`sidecar.drift.psi`, the same PSI, its ``EPSILON`` and its
verdicts), and the bins are built from them as ``ml-sidecar profile build``
builds a profile's:

- **numeric** predictions (regression, scores): ``bins − 1`` inner edges at
  control's quantiles ``1/bins, ..., (bins − 1)/bins``, duplicates dropped, a
  value going to the first bin whose upper edge is ``>=`` it (Prometheus'
  ``le`` rule, as the drift windows count);
- **class** predictions: one bin per class control predicted (the
  :data:`MAX_CATEGORIES` most frequent, ties by name), and one for every other
  class, the challenger's new ones included.

Each side's counts become shares of its own predictions that are numbers
(or classes); with fewer than ``min_samples`` on either side there is no
score and the verdict is ``insufficient_data``, as a drift detector says.

Usage::

    prediction_shift(control_scores, challenger_scores, numeric=True, min_samples=200).psi
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sidecar.drift.psi import psi, psi_verdict
from sidecar.drift.verdicts import Verdict
from sidecar.performance import class_key

__all__ = ["DEFAULT_BINS", "MAX_CATEGORIES", "Shift", "numbers", "prediction_shift"]

DEFAULT_BINS: Final = 10  # SIDECAR_DRIFT_BINS's default, as a profile is built
MAX_CATEGORIES: Final = 50

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Shift:
    """The PSI of the challenger's predictions against control's, its verdict, the bins and each side's count.

    Usage::

        shift = prediction_shift(control, challenger, numeric=False, min_samples=200)
        shift.psi, shift.verdict        # 0.031, "no_drift"
    """

    psi: float
    verdict: Verdict
    bins: int
    control: int
    challenger: int


def numbers(values: Sequence[Any]) -> Floats:
    """The values as floats, NaN where one is not a finite number (a boolean is not)."""
    return np.fromiter(
        (
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else math.nan
            for v in values
        ),
        dtype=np.float64,
        count=len(values),
    )


def prediction_shift(
    control: Sequence[Any],
    challenger: Sequence[Any],
    *,
    numeric: bool,
    min_samples: int,
    bins: int = DEFAULT_BINS,
) -> Shift:
    """PSI of ``challenger``'s predictions against ``control``'s, numbers or classes; see the module docstring."""
    if numeric:
        reference, current = _numeric(numbers(control), numbers(challenger), bins)
    else:
        reference, current = _classes(control, challenger)
    n_ref, n_cur = int(reference.sum()), int(current.sum())
    if n_ref < min_samples or n_cur < min_samples:
        return Shift(math.nan, "insufficient_data", reference.size, n_ref, n_cur)
    score = psi(reference / n_ref, current / n_cur)
    return Shift(score, psi_verdict(score), reference.size, n_ref, n_cur)


def _numeric(control: Floats, challenger: Floats, bins: int) -> tuple[Floats, Floats]:
    ours = control[~np.isnan(control)]
    theirs = challenger[~np.isnan(challenger)]
    if ours.size == 0:
        edges = np.empty(0)
    else:
        edges = np.unique(np.quantile(ours, np.arange(1, bins) / bins))
    size = edges.size + 1
    counts = (
        np.bincount(np.searchsorted(edges, values, side="left"), minlength=size).astype(np.float64)
        for values in (ours, theirs)
    )
    return next(counts), next(counts)


def _classes(control: Sequence[Any], challenger: Sequence[Any]) -> tuple[Floats, Floats]:
    ours = [key for value in control if (key := class_key(value)) is not None]
    theirs = [key for value in challenger if (key := class_key(value)) is not None]
    frequency: dict[str, int] = {}
    for key in ours:
        frequency[key] = frequency.get(key, 0) + 1
    top = sorted(frequency.items(), key=lambda item: (-item[1], item[0]))[:MAX_CATEGORIES]
    index = {key: i for i, (key, _) in enumerate(top)}
    other = len(index)
    counts = []
    for keys in (ours, theirs):
        codes = np.fromiter((index.get(key, other) for key in keys), dtype=np.intp, count=len(keys))
        counts.append(np.bincount(codes, minlength=other + 1).astype(np.float64))
    return counts[0], counts[1]
