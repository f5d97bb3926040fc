"""Importance sampling: the less confident the prediction, the likelier it is kept.

With ``r`` the base rate and ``c`` the prediction's confidence (its top
probability)::

    p(c) = r + (1 - r) · clamp((1 - c) / (1 - c0), 0, 1) ** g

``c0`` (``keep_all_below``, default 0.5) is the confidence at or below which
every record is kept; the default is a binary classifier's least confident
answer. ``g`` (``exponent``, default 1) shapes the ramp from ``c0`` to 1: 1 is
a straight line, 2 keeps fewer of the fairly confident ones. With ``r = 0.05``
and the defaults::

    c    1.0   0.99   0.95   0.9    0.75    <= 0.5
    p    0.05  0.069  0.145  0.24   0.525   1

No confidence (a regression model, an error response, a body that did not
parse) gives ``p = r``: a model without probabilities falls back to random
sampling rather than to keeping everything. The decision waits for the
response, so the caller asks once the confidence is parsed (``needs_response``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from sidecar.sampling.base import BaseSampler, Decision, Headers, Strategy, check_range

__all__ = ["ImportanceSampler"]

_OFF: Decision = (False, 0.0)


class ImportanceSampler(BaseSampler):
    """Keep low-confidence predictions more often: ``p`` rises from ``rate`` to 1 as confidence falls.

    Usage::

        sampler = ImportanceSampler(0.05, keep_all_below=0.5)
        sampler.probability(0.9)  # 0.05 + 0.95 * 0.2 = 0.24
        keep, p = sampler.decide(headers, confidence=0.9)
    """

    strategy: Strategy = "importance"
    needs_response = True

    def __init__(
        self,
        rate: float,
        *,
        keep_all_below: float = 0.5,
        exponent: float = 1.0,
        key: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(rate, key=key, rng=rng)
        # Below 1, so the ramp has a width to divide by.
        check_range("keep_all_below", keep_all_below, 0.0, 0.99)
        check_range("exponent", exponent, 0.1, 10.0)
        self._scale = 1.0 / (1.0 - keep_all_below)
        self._exponent = exponent

    def probability(self, confidence: float | None) -> float:
        """``p`` for a confidence: ``rate + (1 - rate) * clamp((1 - c) / (1 - keep_all_below), 0, 1) ** exponent``."""
        if confidence is None or confidence != confidence:  # None or NaN: unknown
            return self.rate
        x = (1.0 - confidence) * self._scale
        if x >= 1.0:
            return 1.0
        if x <= 0.0:
            return self.rate
        return self.rate + (1.0 - self.rate) * math.pow(x, self._exponent)

    def decide(
        self, headers: Headers, features: Mapping[str, Any] | None = None, confidence: float | None = None
    ) -> Decision:
        if self._off:
            return _OFF
        p = self.probability(confidence)
        u = self._keyed_u(headers, features) if self._keyed else self._random()
        return (u < p, p)
