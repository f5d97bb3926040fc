"""Sampling: which exchanges are captured, and with what probability.

Every captured record carries the probability ``p`` it was kept with and its
weight ``1/p`` (Horvitz-Thompson), so weighted estimates stay unbiased whatever
the strategy. A sampler decides; it never parses a body, imports nothing from
the web side, and does O(1) work per call.

The interface (:class:`Sampler`)::

    keep, p = sampler.decide(headers, features=None, confidence=None)
    sampler.observe(status, latency_seconds)     # after every response
    sampler.activate(reason, hold_seconds=None)  # the alerting hook

``decide`` returns ``(keep, p)``. ``p`` is given for dropped exchanges too, so
the expected number kept is the sum of them. When to call it,
``needs_features`` and ``needs_response`` say:

- neither: at request time, from the request headers alone, so a request that
  is not kept is never held or parsed (``random``, ``trigger``, and
  ``stratified`` by a header);
- ``needs_features``: once the request's features are parsed (``stratified``
  by a feature, or a ``feature:`` sampling key);
- ``needs_response``: once the response's confidence is parsed (``importance``).

In the last two cases the request path hands every exchange to the background
worker, which parses it and then asks. For a batch, ask once per exchange with
the first row's features and the lowest confidence among its rows; every row of
a kept exchange then carries that exchange's ``p``, which keeps weights right.

The rules, with ``r`` the base rate (``SIDECAR_SAMPLE_RATE``). In every
strategy ``r = 0`` keeps nothing (an off switch) and ``r = 1`` keeps everything.

- ``random``: ``p = r``.
- ``stratified``: the first ``m`` arrivals of each stratum in each window are
  kept, the rest with ``p = max(r, m / max(n_prev, c))`` (:mod:`.stratified`).
- ``importance``: ``p = r + (1 - r) · clamp((1 - c) / (1 - c0), 0, 1) ** g``
  for a confidence ``c``; ``p = r`` when there is none (:mod:`.importance`).
- ``trigger``: ``p = r``, or 1 while a 5xx burst, a slow response or an
  ``activate`` call is less than ``hold_seconds`` old (:mod:`.trigger`).

With a sampling key (``SIDECAR_SAMPLING_KEY``, e.g. ``header:x-user-id``), the
uniform ``u`` in the decision ``u < p`` is the key's hash (:func:`key_uniform`)
instead of a random draw. A header is hashed as its bytes, a feature as the
UTF-8 of its ``str()``. At a fixed ``p`` a key is always in or always out, on
every replica and across restarts; when ``p`` varies, a key kept at some ``p``
is kept at every larger one. ``p`` is still each exchange's probability of
being kept (over the population of keys), so the weight is still ``1/p``:
estimates stay unbiased, but vary more, since a key's exchanges come or go
together. An exchange without the key is drawn at random.

Samplers hold no lock: the proxy and the worker share one event-loop thread.
The strategy names and :func:`parse_source`, which the settings validate
without loading the samplers, are in :mod:`sidecar.syntax.sampling`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from sidecar.sampling.base import Clock, Decision, RandomSampler, Sampler, key_uniform
from sidecar.sampling.importance import ImportanceSampler
from sidecar.sampling.stratified import StratifiedSampler
from sidecar.sampling.trigger import ERROR_BURST, LATENCY, TriggerSampler
from sidecar.syntax.sampling import STRATEGIES, Strategy, parse_source

__all__ = [
    "STRATEGIES",
    "ERROR_BURST",
    "LATENCY",
    "Strategy",
    "Decision",
    "Sampler",
    "RandomSampler",
    "StratifiedSampler",
    "ImportanceSampler",
    "TriggerSampler",
    "build_sampler",
    "parse_source",
    "key_uniform",
]


def build_sampler(
    strategy: str,
    *,
    rate: float,
    key: str | None = None,
    stratify_by: str | None = None,
    strata_max: int = 100,
    stratum_min_per_window: int = 10,
    stratum_window_seconds: float = 60.0,
    importance_keep_all_below: float = 0.5,
    importance_exponent: float = 1.0,
    trigger_hold_seconds: float = 300.0,
    trigger_latency_seconds: float | None = None,
    trigger_error_count: int = 5,
    trigger_error_window_seconds: float = 10.0,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
) -> Sampler:
    """The sampler for ``SIDECAR_SAMPLING``; each keyword mirrors the ``SIDECAR_*`` setting of its name.

    Options of other strategies are ignored, so settings can pass them all.
    Raises ``ValueError`` for an unknown strategy, ``stratified`` without
    ``stratify_by``, or a value out of range.

    Usage::

        sampler = build_sampler("stratified", rate=0.01, stratify_by="header:x-segment")
    """

    def stratified() -> Sampler:
        if stratify_by is None:
            raise ValueError("the stratified strategy needs stratify_by, e.g. header:x-segment or feature:country")
        return StratifiedSampler(
            rate,
            by=stratify_by,
            min_per_window=stratum_min_per_window,
            window_seconds=stratum_window_seconds,
            max_strata=strata_max,
            key=key,
            clock=clock,
            rng=rng,
        )

    # Names to constructors in a plain dict, built when asked: no registration at import.
    builders: dict[str, Callable[[], Sampler]] = {
        "random": lambda: RandomSampler(rate, key=key, rng=rng),
        "stratified": stratified,
        "importance": lambda: ImportanceSampler(
            rate, keep_all_below=importance_keep_all_below, exponent=importance_exponent, key=key, rng=rng
        ),
        "trigger": lambda: TriggerSampler(
            rate,
            hold_seconds=trigger_hold_seconds,
            latency_seconds=trigger_latency_seconds,
            error_count=trigger_error_count,
            error_window_seconds=trigger_error_window_seconds,
            key=key,
            clock=clock,
            rng=rng,
        ),
    }
    builder = builders.get(strategy)
    if builder is None:
        raise ValueError(f"unknown sampling strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    return builder()
