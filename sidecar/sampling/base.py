"""The sampler interface, the shared draw of ``u``, and the plain ``random`` strategy.

Every strategy keeps an exchange when ``u < p``: ``p`` is the strategy's
probability for it and ``u`` a uniform draw in [0, 1), from a private random
generator or, with a sampling key, from the key's hash (:func:`key_uniform`).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from sidecar.syntax.sampling import STRATEGIES, Strategy, parse_source

__all__ = [
    "STRATEGIES",
    "Strategy",
    "Decision",
    "Headers",
    "Clock",
    "Sampler",
    "BaseSampler",
    "RandomSampler",
    "parse_source",
    "key_uniform",
    "find_header",
    "check_range",
]

# (keep, probability): a plain tuple, since a NamedTuple costs some 0.3 µs to build, a tuple 0.01 µs.
Decision = tuple[bool, float]
Headers = Iterable[tuple[bytes, bytes]]  # ASGI request headers, lower-case names
Clock = Callable[[], float]

_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: Fibonacci hashing
_MASK64 = (1 << 64) - 1
_TWO_POW_MINUS_53 = 2.0**-53


def key_uniform(key: bytes) -> float:
    """The uniform ``u`` in [0, 1) that a sampling key draws, the same in every process.

    ``u = ((crc32(key) * 0x9E3779B97F4A7C15) mod 2**64 >> 11) / 2**53``.
    crc32 is fast and stable across processes, where ``hash()`` is salted per
    process. crc32 alone is linear, which would tie the decisions of similar
    keys (``user-1``, ``user-2``) together; the Fibonacci multiply mixes its
    bits. The top 53 bits make an exact double below 1, so ``p = 1`` keeps
    every key.
    """
    return (((zlib.crc32(key) * _GOLDEN) & _MASK64) >> 11) * _TWO_POW_MINUS_53


def find_header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case bytes), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def check_range(name: str, value: float, low: float, high: float = math.inf) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``low <= value <= high``."""
    # ``not low <= value`` is also true for NaN.
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low:g} to {high:g}, got {value!r}")


class Sampler(Protocol):
    """What the proxy and the worker call; the package docstring says when."""

    strategy: Strategy
    rate: float
    needs_features: bool
    needs_response: bool

    def decide(
        self, headers: Headers, features: Mapping[str, Any] | None = None, confidence: float | None = None
    ) -> Decision:
        """``(keep, p)`` for one exchange; ``p`` is given for dropped ones too."""
        ...

    def observe(self, status: int, latency_seconds: float) -> None:
        """Feed one response's status and duration to trigger detection."""
        ...

    def activate(self, reason: str, hold_seconds: float | None = None) -> None:
        """Capture everything for a while; only the ``trigger`` strategy acts on it."""
        ...


class BaseSampler:
    """What every strategy shares: the rate, the draw of ``u``, and no-op trigger feeds."""

    strategy: Strategy
    needs_response = False

    def __init__(self, rate: float, *, key: str | None, rng: random.Random | None) -> None:
        check_range("rate", rate, 0.0, 1.0)
        self.rate = rate
        # Rate 0 is an off switch in every strategy, whatever else would raise p.
        self._off = rate == 0.0
        # A bound method of a private generator: no global state, and seedable.
        self._random = (random.Random() if rng is None else rng).random
        self._keyed = key is not None
        self.needs_features = False
        self._key_name = ""
        self._key_header = b""
        if key is not None:
            kind, self._key_name = parse_source(key)
            self.needs_features = kind == "feature"
            # Empty for a feature key: header names are never empty, so this also says which kind.
            self._key_header = self._key_name.encode("latin-1") if kind == "header" else b""

    def _keyed_u(self, headers: Headers, features: Mapping[str, Any] | None) -> float:
        if self._key_header:
            key = find_header(headers, self._key_header)
        else:
            value = None if features is None else features.get(self._key_name)
            # str() first, so the feature 42 and the header "42" draw the same u.
            key = None if value is None else str(value).encode()
        return self._random() if key is None else key_uniform(key)

    def observe(self, status: int, latency_seconds: float) -> None:
        """Nothing to do: only the trigger strategy watches responses."""

    def activate(self, reason: str, hold_seconds: float | None = None) -> None:
        """Nothing to do: only the trigger strategy can be armed."""


class RandomSampler(BaseSampler):
    """Keep each exchange with the same probability ``rate``.

    Usage::

        sampler = RandomSampler(0.1)
        keep, p = sampler.decide(scope["headers"])  # p == 0.1

        by_user = RandomSampler(0.1, key="header:x-user-id")  # a user is always in or always out
    """

    strategy: Strategy = "random"

    def __init__(self, rate: float, *, key: str | None = None, rng: random.Random | None = None) -> None:
        super().__init__(rate, key=key, rng=rng)
        # p never changes, so the two answers are built once.
        self._keep: Decision = (True, rate)
        self._drop: Decision = (False, rate)

    def decide(
        self, headers: Headers, features: Mapping[str, Any] | None = None, confidence: float | None = None
    ) -> Decision:
        # No off check: u < 0 never holds, so rate 0 keeps nothing by itself.
        u = self._keyed_u(headers, features) if self._keyed else self._random()
        return self._keep if u < self.rate else self._drop
