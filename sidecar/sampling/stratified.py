"""Stratified sampling: every stratum seen yields a minimum number of records per window.

A stratum is the value of one request header or one feature (``by``). With
``r`` the base rate and ``m`` the minimum per window, the ``c``-th arrival of a
stratum in the current window is kept with::

    p = 1                               if c <= m
    p = max(r, m / max(n_prev, c))      otherwise

where ``n_prev`` is the stratum's arrival count in the previous window (0 after
a quiet window). So:

- every stratum yields at least ``min(m, arrivals)`` records in every window,
  whatever its traffic did since the last one; a rare stratum is kept whole;
- a steady common stratum yields about ``m + max(r·n, m)``: its first ``m`` and
  then its share of ``m / n``, or the base rate if that is higher;
- a new or surging stratum is thinned within the window (``m / c``, so about
  ``m · (1 + ln(c / m))`` records), rather than kept whole until the window ends.

``p`` depends on arrival counts only, never on earlier draws, so ``1/p``
weights stay unbiased. Windows are the sampler's own, aligned to multiples of
``window_seconds`` on the clock. At most ``max_strata`` values get a stratum of
their own; later ones share the stratum ``other`` (whose members are then
sampled together, the rare ones among them at the common rate). When the table
is full, values unseen in the current and previous window are dropped from it,
at most once a window, so that a passing burst of odd values cannot keep it
full for good.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from sidecar.sampling.base import (
    BaseSampler,
    Clock,
    Decision,
    Headers,
    Strategy,
    check_range,
    find_header,
    parse_source,
)

__all__ = ["StratifiedSampler"]

_OFF: Decision = (False, 0.0)


class StratifiedSampler(BaseSampler):
    """Keep at least ``min_per_window`` exchanges per stratum and window, the rest at about ``rate``.

    Usage::

        sampler = StratifiedSampler(0.01, by="header:x-segment", min_per_window=10)
        keep, p = sampler.decide(scope["headers"])

        by_country = StratifiedSampler(0.01, by="feature:country")  # needs_features
        keep, p = by_country.decide(headers, features={"country": "NZ", "age": 31})
    """

    strategy: Strategy = "stratified"

    def __init__(
        self,
        rate: float,
        *,
        by: str,
        min_per_window: int = 10,
        window_seconds: float = 60.0,
        max_strata: int = 100,
        key: str | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(rate, key=key, rng=rng)
        check_range("min_per_window", min_per_window, 0, 1_000_000)
        check_range("window_seconds", window_seconds, 1.0)
        check_range("max_strata", max_strata, 1, 100_000)
        kind, self._by_name = parse_source(by)
        # Empty for a feature: header names are never empty.
        self._by_header = self._by_name.encode("latin-1") if kind == "header" else b""
        self.needs_features = self.needs_features or kind == "feature"
        self._min = min_per_window
        self._per_second = 1.0 / window_seconds
        self._max = max_strata
        self._clock = clock
        # Per stratum, a small list rather than an object, for speed:
        # [window index, arrivals in that window, arrivals in the window before].
        self._strata: dict[object, list[int]] = {}
        self._other = [0, 0, 0]
        self._swept = -1

    def strata(self) -> list[object]:
        """The values that have a stratum of their own: header bytes, or feature values."""
        return list(self._strata)

    def decide(
        self, headers: Headers, features: Mapping[str, Any] | None = None, confidence: float | None = None
    ) -> Decision:
        if self._off:
            return _OFF
        if self._by_header:
            value: object = find_header(headers, self._by_header)
        else:
            value = None if features is None else features.get(self._by_name)
        window = int(self._clock() * self._per_second)
        try:
            counts = self._strata.get(value)
        except TypeError:  # an unhashable feature value, such as a list
            value = repr(value)
            counts = self._strata.get(value)
        if counts is None:
            counts = self._admit(value, window)
        if counts[0] != window:
            # The count of the window just ended predicts this one's; after a
            # quiet window there is nothing to predict from.
            counts[2] = counts[1] if counts[0] == window - 1 else 0
            counts[0] = window
            counts[1] = 0
        arrivals = counts[1] = counts[1] + 1
        m = self._min
        if arrivals <= m:
            p = 1.0
        else:
            # max(previous, so far) rather than previous alone: a stratum that
            # surges is thinned at once, not after a window kept whole.
            previous = counts[2]
            p = m / (previous if previous > arrivals else arrivals)
            if p < self.rate:
                p = self.rate
        u = self._keyed_u(headers, features) if self._keyed else self._random()
        return (u < p, p)

    def _admit(self, value: object, window: int) -> list[int]:
        # The slow path, once per new value, so the hot path stays one dict lookup.
        if value != value:  # NaN: every float('nan') would be a new key
            value = "nan"
            counts = self._strata.get(value)
            if counts is not None:
                return counts
        if len(self._strata) >= self._max and self._swept != window:
            self._swept = window
            for stale in [v for v, c in self._strata.items() if c[0] < window - 1]:
                del self._strata[stale]
        if len(self._strata) >= self._max:
            return self._other
        counts = self._strata[value] = [window, 0, 0]
        return counts
