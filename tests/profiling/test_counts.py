"""Bounded counting: exact below the caps, honest about what it loses above them."""

from __future__ import annotations

from collections import Counter

import numpy as np

from sidecar.profiling.counts import KeyCounts, NumberCounts


def test_number_counts_are_exact_until_the_cap() -> None:
    counts = NumberCounts(cap=5)
    counts.add(np.array([1.0, 2.0, 2.0]))
    counts.add(np.array([2.0, 3.0, -0.0, 0.0]))
    assert counts.items() == [(-0.0, 2), (1.0, 1), (2.0, 3), (3.0, 1)]
    assert counts.distinct == 4
    counts.add(np.array([4.0, 5.0]))
    assert counts.saturated and counts.distinct == 5 and counts.items() == []
    counts.add(np.array([9.0]))  # ignored once saturated
    assert counts.distinct == 5


def test_key_counts_are_exact_below_capacity() -> None:
    keys = KeyCounts(capacity=10)
    keys.add({"a": 3, "b": 1})
    keys.add({"a": 1, "c": 2})
    assert keys.counts == {"a": 4, "b": 1, "c": 2}
    assert keys.undercount == 0 and keys.peak == 3


def test_key_counts_undercount_stays_within_the_misra_gries_bound() -> None:
    rng = np.random.default_rng(5)
    # Zipf-like keys: a few heavy ones, a long tail that forces cuts.
    stream = [f"k{k}" for k in rng.zipf(1.3, 200_000).tolist()]
    keys = KeyCounts(capacity=200)
    for start in range(0, len(stream), 10_000):
        keys.add(Counter(stream[start : start + 10_000]))
    truth = Counter(stream)
    assert 0 < keys.undercount <= 2 * len(stream) / 200
    assert len(keys.counts) <= 200
    for key, count in keys.counts.items():
        assert truth[key] - keys.undercount <= count <= truth[key]
    # Every key heavier than the undercount survives.
    assert {k for k, c in truth.items() if c > keys.undercount} <= set(keys.counts)
