"""One arm's sample of a metric, as every test here reads it: the units, their mean and their variance.

The evaluator keeps mergeable sums per arm (across time slices and replicas)
and turns them into :class:`Moments` when it evaluates:

- a mean over units, from ``n``, ``Σy`` and ``Σy²``: the mean ``Σy/n`` and the
  sample variance ``(Σy² − (Σy)²/n) / (n − 1)``;
- a proportion (:class:`Proportion`), from ``n`` and the successes ``x``: the
  mean ``p̂ = x/n`` and the sample variance of the 0/1 values, ``p̂(1 − p̂)·n/(n − 1)``;
- a per-unit ratio, ``R = Σᵢ Yᵢ / Σᵢ Xᵢ`` where unit i contributed the values
  ``Yᵢ`` over its ``Xᵢ`` requests (revenue per request, accuracy over a user's
  requests). Units, not requests, are independent, so the variance comes
  from the delta method (Deng, Knoblich & Lu, "Applying the Delta Method in
  Metric Analytics", KDD 2018)::

      Var(R̂) ≈ (s²_Y − 2R·s_XY + R²·s²_X) / (n · X̄²)

  which is the variance of the mean of the linearised values
  ``(Yᵢ − R·Xᵢ) / X̄``. :class:`Moments` keeps ``n · Var(R̂)`` as its
  per-unit ``variance``, so a ratio goes through the same tests as a mean.

Every variance is per unit (ddof = 1): the variance of the mean is
``variance / n``. With fewer than two units it is NaN, and so is everything
computed from it.

Usage::

    Moments.of_sums(n=1000, total=5120.0, total_sq=31000.0)
    Moments.of_ratio(revenue_per_user, requests_per_user)   # numpy arrays, one entry per unit
    Proportion(n=5000, successes=560).moments()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Moments", "Proportion"]


@dataclass(frozen=True, slots=True)
class Moments:
    """``n`` units, their ``mean`` and their per-unit sample ``variance`` (ddof 1); see the module docstring.

    Usage::

        m = Moments.of_values(np.array([1.0, 2.0, 4.0]))
        m.mean, m.variance, m.standard_error  # (2.333..., 2.333..., 0.881...)
    """

    n: int
    mean: float
    variance: float

    @property
    def standard_error(self) -> float:
        """The standard error of the mean, ``sqrt(variance / n)``."""
        return math.sqrt(self.variance / self.n) if self.n > 0 else math.nan

    @classmethod
    def of_sums(cls, n: int, total: float, total_sq: float) -> Moments:
        """From the count, the sum and the sum of squares; mergeable by adding the three."""
        if n < 1:
            return cls(0, math.nan, math.nan)
        mean = total / n
        # max(0, ...): cancellation in Σy² − (Σy)²/n can leave a tiny negative for constant values.
        variance = max(0.0, (total_sq - total * mean) / (n - 1)) if n > 1 else math.nan
        return cls(n, mean, variance)

    @classmethod
    def of_values(cls, values: npt.ArrayLike) -> Moments:
        """From one value per unit (two-pass, so no cancellation)."""
        array = np.asarray(values, dtype=np.float64)
        n = int(array.size)
        if n < 1:
            return cls(0, math.nan, math.nan)
        return cls(n, float(array.mean()), float(array.var(ddof=1)) if n > 1 else math.nan)

    @classmethod
    def of_ratio_sums(cls, n: int, sum_y: float, sum_x: float, sum_yy: float, sum_xx: float, sum_xy: float) -> Moments:
        """A per-unit ratio ``ΣY/ΣX`` from mergeable sums over the ``n`` units, by the delta method."""
        if n < 1 or sum_x == 0:
            return cls(n, math.nan, math.nan)
        ratio = sum_y / sum_x
        if n < 2:
            return cls(n, ratio, math.nan)
        mean_x = sum_x / n
        var_y = (sum_yy - sum_y * sum_y / n) / (n - 1)
        var_x = (sum_xx - sum_x * sum_x / n) / (n - 1)
        cov = (sum_xy - sum_x * sum_y / n) / (n - 1)
        variance = (var_y - 2.0 * ratio * cov + ratio * ratio * var_x) / (mean_x * mean_x)
        return cls(n, ratio, max(0.0, variance))

    @classmethod
    def of_ratio(cls, values: npt.ArrayLike, counts: npt.ArrayLike) -> Moments:
        """A per-unit ratio from one entry per unit: the unit's total ``values`` over its ``counts`` of requests."""
        y = np.asarray(values, dtype=np.float64)
        x = np.asarray(counts, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"values and counts differ in shape: {y.shape} and {x.shape}")
        return cls.of_ratio_sums(int(y.size), float(y.sum()), float(x.sum()), float(y @ y), float(x @ x), float(x @ y))

    @staticmethod
    def pooled(parts: Sequence[Moments]) -> Moments:
        """The moments of the union of the samples (segments into a whole), exactly.

        ``M2 = Σ (nₛ − 1)·s²ₛ + nₛ·(meanₛ − mean)²`` (Chan et al.'s merge), so no sums
        of squares are needed.
        """
        parts = [p for p in parts if p.n > 0]
        n = sum(p.n for p in parts)
        if n < 1:
            return Moments(0, math.nan, math.nan)
        mean = math.fsum(p.n * p.mean for p in parts) / n
        if n < 2:
            return Moments(n, mean, math.nan)
        m2 = math.fsum((p.n - 1) * (p.variance if p.n > 1 else 0.0) + p.n * (p.mean - mean) ** 2 for p in parts)
        return Moments(n, mean, m2 / (n - 1))


@dataclass(frozen=True, slots=True)
class Proportion:
    """``successes`` out of ``n`` units: a metric whose unit values are 0 or 1 (converted, correct).

    Usage::

        Proportion(5000, 560).rate  # 0.112
    """

    n: int
    successes: float

    @property
    def rate(self) -> float:
        return float(self.successes / self.n) if self.n > 0 else math.nan

    def moments(self) -> Moments:
        """The moments of the 0/1 values: mean ``p̂``, variance ``p̂(1 − p̂)·n/(n − 1)``."""
        if self.n < 1:
            return Moments(0, math.nan, math.nan)
        p = self.rate
        return Moments(self.n, p, p * (1.0 - p) * self.n / (self.n - 1) if self.n > 1 else math.nan)
