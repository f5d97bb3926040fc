"""Assignment of units to variants: a keyed hash of the unit, no state, the same arm everywhere.

A unit (a user id from a header, a feature of the payload) is hashed with
the experiment's salt into a number ``u`` in [0, 1), and the variant is the
one whose range of cumulative weights holds ``u``::

    u = (first 8 bytes of BLAKE2b(unit, key=salt, digest_size=8), big-endian) >> 11, × 2⁻⁵³
    variant = the first i with u < w₀ + … + wᵢ          (the variants in the file's order)

BLAKE2b (RFC 7693) is in every Python's ``hashlib``, keyed, and well mixed: the
same unit gets the same arm on every replica, after a restart and on any
Python version, and a unit's arm in one experiment says nothing of its arm in
another with a different salt (``hash()`` is salted per process, so it would
not do). A salt longer than BLAKE2b's 64-byte key is first hashed to 64 bytes,
as HMAC does with a long key. Keeping 53 bits makes ``u`` an exact double
below 1. Units are UTF-8 text, or the header's raw bytes.

A request without the unit (or with an empty one) falls back to a per-request coin with the same
weights: :attr:`Arm.randomised` tells it apart, so the caller can count it,
and the analysis knows those requests are not one unit each.

It runs on the request path: one BLAKE2b over a few bytes from a pre-keyed
state and a bisection of a short tuple, with the results allocated once, at
construction (about 0.4 µs a call here, see ``tests/experiments/test_assignment.py``).
:meth:`Assigner.index`, the router's, bisects the digest itself: each bound
``w₀ + … + wᵢ`` is turned once into :func:`cut`, the first 8-byte digest whose
``u`` is not below it, and 8-byte strings compare as the big-endian integers
they spell, so the arm is found without the integer and the float of ``u``.

Usage::

    assigner = Assigner.of(experiment)            # or Assigner([("control", 0.9), ("treatment", 0.1)], "salt")
    assigner.assign(b"u-17").variant                # "control", on every replica, every time
    assigner.assign(None).randomised                # True: no key, a coin
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.experiments.definition import Experiment

__all__ = ["Arm", "Assigner", "cut"]

_KEY_BYTES = 64  # BLAKE2b's largest key
_SCALE = 2.0**-53
_BUCKETS = 2**53  # the values of u: k × 2⁻⁵³ for k in [0, 2⁵³)
_DROPPED_BITS = 11  # 64-bit digest >> 11 is k


def cut(bound: float) -> bytes | None:
    """The smallest 8-byte digest whose ``u`` is not below ``bound`` (in [0, 1]), big-endian; None when none is.

    ``u < bound`` holds exactly for the digests below it, so a bisection of the digest among the cuts of the
    cumulative weights is the bisection of ``u`` among the weights: ``u = k × 2⁻⁵³ < bound`` is
    ``k < ⌈bound × 2⁵³⌉`` (scaling by a power of two is exact), and ``k = digest >> 11``.

    >>> cut(0.5).hex(), cut(1.0)
    ('8000000000000000', None)
    """
    first = math.ceil(bound * _BUCKETS)
    return None if first >= _BUCKETS else (first << _DROPPED_BITS).to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class Arm:
    """Where a request goes: the variant, its index in the definition, and whether a coin chose it (no key).

    Usage::

        Arm("treatment", 1, randomised=False)
    """

    variant: str
    index: int
    randomised: bool


class Assigner:
    """Assigns units to variants by their weights, deterministically from a keyed hash; see the module docstring.

    ``rng`` draws the coins for requests without a key (a fresh ``random.Random`` by default; pass a seeded
    one in tests).

    Usage::

        assigner = Assigner([("control", 0.5), ("treatment", 0.5)], salt="ranker-v2")
        assigner.bucket("u-17")          # the unit's u in [0, 1), the same forever
        assigner.assign("u-17")          # Arm(variant='treatment', index=1, randomised=False), say
    """

    __slots__ = ("_bounds", "_cuts", "_hashed", "_coin", "_keyed", "_random")

    def __init__(self, weights: Sequence[tuple[str, float]], salt: str, *, rng: random.Random | None = None) -> None:
        if not weights or any(not w > 0 for _, w in weights):
            raise ValueError(f"expected positive weights, got {list(weights)}")
        total = sum(w for _, w in weights)
        bounds: list[float] = []
        running = 0.0
        for _, weight in weights:
            running += weight / total
            bounds.append(running)
        # The last bound is exactly 1, so rounding in the sum never leaves a u without a variant.
        bounds[-1] = 1.0
        self._bounds = tuple(bounds)
        # A bound no digest reaches (the last, 1.0) has no cut: every u is below it, so it never counts.
        self._cuts = tuple(c for c in map(cut, bounds) if c is not None)
        self._hashed = tuple(Arm(name, i, False) for i, (name, _) in enumerate(weights))
        self._coin = tuple(Arm(name, i, True) for i, (name, _) in enumerate(weights))
        key = salt.encode()
        if len(key) > _KEY_BYTES:
            key = hashlib.blake2b(key, digest_size=_KEY_BYTES).digest()
        self._keyed = hashlib.blake2b(digest_size=8, key=key)
        self._random = rng if rng is not None else random.Random()

    @classmethod
    def of(cls, experiment: Experiment, *, rng: random.Random | None = None) -> Assigner:
        """The assigner of a split-mode experiment: its variants' weights, in order, and its salt."""
        weights = [(v.name, v.weight) for v in experiment.variants if v.weight is not None]
        if len(weights) != len(experiment.variants):
            raise ValueError(
                f"experiment {experiment.name!r} is in {experiment.mode} mode: its variants have no weights"
            )
        return cls(weights, experiment.assignment.salt, rng=rng)

    def bucket(self, unit: bytes | str) -> float:
        """The unit's position in [0, 1): the top 53 bits of its keyed hash."""
        state = self._keyed.copy()  # copying the keyed state is cheaper than keying a new one
        state.update(unit.encode() if isinstance(unit, str) else unit)
        return (int.from_bytes(state.digest(), "big") >> _DROPPED_BITS) * _SCALE

    def index(self, unit: bytes) -> int:
        """The index of a unit's arm, from its bytes (not empty): the arm of its :meth:`bucket`, on the request path.

        Usage::

            assigner.index(b"u-17")  # 1: the unit's bucket 0.858 is past 0.5
        """
        state = self._keyed.copy()
        state.update(unit)
        return bisect_right(self._cuts, state.digest())

    def coin(self) -> int:
        """The index of a coin's arm, drawn by the weights: the arm of a request without a unit."""
        return bisect_right(self._bounds, self._random.random())

    def assign(self, unit: bytes | str | None) -> Arm:
        """The unit's arm; None or empty (no key on the request) draws a coin, as :attr:`Arm.randomised` says.

        An empty key is no key: hashing it would put every request that lacks one in the same arm.
        """
        if not unit:
            return self._coin[self.coin()]
        return self._hashed[self.index(unit.encode() if isinstance(unit, str) else unit)]
