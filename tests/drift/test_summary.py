"""Window summary statistics against numpy on the same weighted data."""

from __future__ import annotations

import numpy as np
import pytest

from sidecar.drift import DriftTracker, evaluate
from tests.drift.helpers import FakeClock, categorical, numeric, profile, record


def test_numeric_stats_match_numpy() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(50.0, 10.0, 2000)
    values = rng.normal(55.0, 12.0, 3000)
    probability = rng.choice([0.1, 0.5, 1.0], 3000)
    nulls = rng.random(3000) < 0.05
    tracker = DriftTracker(profile({"x": numeric(reference)}), clock=FakeClock())
    tracker.update(
        [
            record({"x": None if null else float(v)}, probability=float(p))
            for v, p, null in zip(values, probability, nulls, strict=True)
        ]
    )
    stats = evaluate(tracker).feature("x").stats
    w, x = 1.0 / probability[~nulls], values[~nulls]
    assert stats.count == int((~nulls).sum())
    assert stats.mean == pytest.approx(np.average(x, weights=w), rel=1e-12)
    assert stats.std == pytest.approx(np.sqrt(np.average((x - np.average(x, weights=w)) ** 2, weights=w)), rel=1e-9)
    assert stats.min == x.min()
    assert stats.max == x.max()
    assert stats.null_share == pytest.approx((1.0 / probability[nulls]).sum() / (1.0 / probability).sum(), rel=1e-12)
    assert (stats.cardinality, stats.cardinality_exact) == (128, False)  # at least 128: one slice filled up


def test_variance_survives_large_values() -> None:
    """Sums are shifted by the reference mean: 1e9 ± 0.01 keeps its spread."""
    rng = np.random.default_rng(6)
    reference = 1e9 + rng.normal(0.0, 0.01, 1000)
    values = 1e9 + rng.normal(0.0, 0.01, 500)
    tracker = DriftTracker(profile({"t": numeric(reference)}), clock=FakeClock())
    tracker.update([record({"t": float(v)}) for v in values])
    stats = evaluate(tracker).feature("t").stats
    assert stats.std == pytest.approx(values.std(), rel=1e-6)
    assert stats.mean == pytest.approx(values.mean(), rel=1e-15)


def test_cardinality_is_exact_across_slices_until_one_fills_up() -> None:
    clock = FakeClock(now=0.0)
    tracker = DriftTracker(profile({"x": numeric(np.arange(1000.0))}), clock=clock)
    for minute in range(10):
        clock.now = minute * 60.0
        tracker.update([record({"x": float(minute * 100 + i)}) for i in range(100)])
    stats = evaluate(tracker).feature("x").stats
    assert (stats.cardinality, stats.cardinality_exact) == (1000, True)


def test_categorical_stats() -> None:
    tracker = DriftTracker(profile({"c": categorical(["a", "b"], [0.5, 0.5], 1000)}), clock=FakeClock())
    tracker.update([record({"c": v}) for v in ["a", "b", "zz", "a", None]])
    stats = evaluate(tracker).feature("c").stats
    assert (stats.count, stats.cardinality, stats.cardinality_exact) == (4, 3, True)
    assert (stats.mean, stats.std, stats.min, stats.max) == (None, None, None, None)
    assert stats.null_share == pytest.approx(0.2)


def test_empty_window() -> None:
    tracker = DriftTracker(profile({"x": numeric(np.arange(100.0))}), clock=FakeClock())
    stats = evaluate(tracker).feature("x").stats
    assert (stats.count, stats.mean, stats.std, stats.null_share, stats.cardinality) == (0, None, None, None, 0)
