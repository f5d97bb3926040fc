"""Trigger sampling: the base rate, but everything while something is wrong.

``p = rate``, except ``p = 1`` while a trigger is active. A trigger fires on:

- a 5xx burst: the ``error_count``-th response with a 5xx status within
  ``error_window_seconds`` (the proxy's own 502 and 504 count: the client saw
  them);
- a slow response: one that took longer than ``latency_seconds``;
- a call to :meth:`TriggerSampler.activate`, the hook for the alerting module.

It stays active ``hold_seconds`` after its latest firing; a new firing extends
the hold and never shortens it. The decision is taken at request time, from the
state then, so the responses that fire a trigger are themselves sampled at the
base rate; everything after them is kept.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from sidecar.sampling.base import BaseSampler, Clock, Decision, Headers, Strategy, check_range

__all__ = ["TriggerSampler", "ERROR_BURST", "LATENCY"]

# The reasons this module fires with; ``activate`` callers pass their own.
ERROR_BURST = "error_burst"
LATENCY = "latency"

_OFF: Decision = (False, 0.0)
_ALL: Decision = (True, 1.0)
# The longest hold: a mistaken huge one would otherwise keep everything until a restart.
_DAY = 86_400.0


class TriggerSampler(BaseSampler):
    """Sample at ``rate``, but keep everything while a trigger is active and ``hold_seconds`` after.

    Usage::

        sampler = TriggerSampler(0.01, hold_seconds=300, latency_seconds=2.0)
        keep, p = sampler.decide(scope["headers"])
        sampler.observe(502, 0.003)        # after every response
        sampler.activate("drift_country")  # from the alerting module
        sampler.active_reason              # "drift_country"
    """

    strategy: Strategy = "trigger"

    def __init__(
        self,
        rate: float,
        *,
        hold_seconds: float = 300.0,
        latency_seconds: float | None = None,
        error_count: int = 5,
        error_window_seconds: float = 10.0,
        key: str | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(rate, key=key, rng=rng)
        check_range("hold_seconds", hold_seconds, 0.0, _DAY)
        check_range("error_count", error_count, 1, 10_000)
        check_range("error_window_seconds", error_window_seconds, 0.0)
        if latency_seconds is not None:
            check_range("latency_seconds", latency_seconds, 0.0)
        self._hold = hold_seconds
        self._latency = math.inf if latency_seconds is None else latency_seconds
        self._error_count = error_count
        self._error_window = error_window_seconds
        self._clock = clock
        self._keep: Decision = (True, rate)
        self._drop: Decision = (False, rate)
        # The times of the last ``error_count`` 5xx responses: there is a burst
        # when the oldest of them is recent. O(1) a response, bounded memory.
        self._errors: deque[float] = deque(maxlen=error_count)
        self._until = -math.inf
        self._reason: str | None = None
        self.activations: dict[str, int] = {}  # inactive-to-active transitions, by reason

    @property
    def active_reason(self) -> str | None:
        """Why everything is kept now (the latest firing's reason), or None at the base rate."""
        return self._reason if self._clock() < self._until else None

    def decide(
        self, headers: Headers, features: Mapping[str, Any] | None = None, confidence: float | None = None
    ) -> Decision:
        if self._off:
            return _OFF
        if self._clock() < self._until:
            return _ALL
        u = self._keyed_u(headers, features) if self._keyed else self._random()
        return self._keep if u < self.rate else self._drop

    def observe(self, status: int, latency_seconds: float) -> None:
        """Fire on the ``error_count``-th 5xx within ``error_window_seconds``, or on a slow response."""
        if status >= 500:
            now = self._clock()
            errors = self._errors
            errors.append(now)
            if len(errors) == self._error_count and now - errors[0] <= self._error_window:
                self._fire(ERROR_BURST, now, self._hold)
        if latency_seconds > self._latency:
            self._fire(LATENCY, self._clock(), self._hold)

    def activate(self, reason: str, hold_seconds: float | None = None) -> None:
        """Keep everything for ``hold_seconds`` from now (default: the sampler's hold).

        A caller whose condition lasts, such as a firing alert, calls this again
        on each evaluation: each call extends the hold.
        """
        hold = self._hold if hold_seconds is None else hold_seconds
        check_range("hold_seconds", hold, 0.0, _DAY)
        self._fire(reason, self._clock(), hold)

    def _fire(self, reason: str, now: float, hold: float) -> None:
        if now >= self._until:
            self.activations[reason] = self.activations.get(reason, 0) + 1
        self._until = max(self._until, now + hold)
        self._reason = reason
