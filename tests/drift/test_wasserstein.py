"""The normed Wasserstein distance from the bins, against scipy's on the raw samples behind them.

The tolerances follow from the approximation (sidecar/drift/wasserstein.py):
10 quantile bins, 20,000 reference and 3,000 current values.

- A location shift is pinned by the two means, so only the linear
  interpolation of the CDFs inside the inner bins is left: within 1 %.
- A change of spread leaves the means alone, and the two tails' areas come
  from the exponential model of the open-ended bins, which reads the density
  of the next bin on a 3,000-value sample: within 30 % (the worst of these
  seeds is +29 % at σ × 1.3, and +27 % of a small 0.07 at σ × 1.1, which is
  why that case is bounded in absolute terms).
- No shift at all: both are sampling noise of about 0.02, and within 0.012 of each other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.drift import DriftTracker, Side, evaluate, normed_wasserstein, wasserstein_binned
from sidecar.reference import Distribution, Stats
from tests.drift.helpers import FakeClock, numeric, profile, record

Draw = Callable[[np.random.Generator, int], np.ndarray]
SEEDS = range(5)


def _normal(mean: float, std: float) -> Draw:
    return lambda rng, n: rng.normal(mean, std, n)


def _ours(reference: np.ndarray, current: np.ndarray) -> float:
    """The sidecar's figure, through the windows and the evaluation, as live traffic gets it."""
    tracker = DriftTracker(profile({"x": numeric(reference)}), clock=FakeClock())
    tracker.update_columns(len(current), {"x": current})
    result = evaluate(tracker).feature("x").method("wasserstein")
    assert result is not None and result.score is not None
    return result.score


def _scipy(reference: np.ndarray, current: np.ndarray) -> float:
    return float(stats.wasserstein_distance(reference, current) / reference.std())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("reference", "current"),
    [
        (_normal(0.0, 1.0), _normal(0.1, 1.0)),
        (_normal(0.0, 1.0), _normal(0.3, 1.0)),
        (_normal(0.0, 1.0), _normal(-1.0, 1.0)),
        (_normal(0.0, 1.0), _normal(3.0, 1.0)),  # far past the reference's last edge
        (_normal(1e6, 50.0), _normal(1e6 + 15.0, 50.0)),  # large values, close together
        (lambda rng, n: rng.lognormal(0.0, 0.5, n), lambda rng, n: 1.2 * rng.lognormal(0.0, 0.5, n)),
        (lambda rng, n: rng.poisson(3.0, n) * 1.0, lambda rng, n: rng.poisson(3.5, n) * 1.0),  # ties on the edges
    ],
    ids=["0.1σ", "0.3σ", "-1σ", "3σ", "large-values", "lognormal-x1.2", "poisson"],
)
def test_a_location_shift_within_1_percent(seed: int, reference: Draw, current: Draw) -> None:
    rng = np.random.default_rng(seed)
    ref, cur = reference(rng, 20_000), current(rng, 3_000)
    assert _ours(ref, cur) == pytest.approx(_scipy(ref, cur), rel=0.01)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("std", [0.8, 1.3])
def test_a_change_of_spread_within_30_percent(seed: int, std: float) -> None:
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(0.0, 1.0, 20_000), rng.normal(0.0, std, 3_000)
    assert _ours(ref, cur) == pytest.approx(_scipy(ref, cur), rel=0.3)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_small_change_of_spread_and_no_change_at_all_are_close_in_absolute_terms(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.normal(0.0, 1.0, 20_000)
    wider = rng.normal(0.0, 1.1, 3_000)
    assert _ours(ref, wider) == pytest.approx(_scipy(ref, wider), abs=0.02)
    same = rng.normal(0.0, 1.0, 3_000)
    assert _ours(ref, same) == pytest.approx(_scipy(ref, same), abs=0.012)
    assert _ours(ref, same) < 0.05  # far below the 0.1 at which a shift is material


def test_weights_count_as_they_do_for_every_statistic() -> None:
    """Records kept with p = 0.2 stand for five each: scipy's weighted distance on the kept values."""
    rng = np.random.default_rng(21)
    ref = rng.normal(0.0, 1.0, 20_000)
    values = rng.normal(0.3, 1.0, 4_000)
    rare = values > 1.0  # the upper tail kept at p = 0.2, the rest at 1
    kept = rare & (rng.random(len(values)) < 0.2) | ~rare
    probability = np.where(rare, 0.2, 1.0)[kept]
    tracker = DriftTracker(profile({"x": numeric(ref)}), clock=FakeClock())
    kept_values = values[kept].tolist()
    tracker.update([record({"x": v}, probability=p) for v, p in zip(kept_values, probability.tolist(), strict=True)])
    result = evaluate(tracker).feature("x").method("wasserstein")
    assert result is not None and result.score is not None
    expected = stats.wasserstein_distance(ref, values[kept], v_weights=1.0 / probability) / ref.std()
    assert result.score == pytest.approx(expected, rel=0.01)


def test_a_reference_without_edges_is_judged_by_its_mean_and_a_constant_one_by_the_floor() -> None:
    constant = Distribution.numeric(edges=(), ratios=(1.0,), stats=Stats(count=1000, mean=5.0, std=0.0))
    tracker = DriftTracker(profile({"x": constant}), min_samples=10, clock=FakeClock())
    tracker.update_columns(100, {"x": np.full(100, 5.0)})
    assert evaluate(tracker).feature("x").methods[2].score == 0.0
    tracker.update_columns(100, {"x": np.full(100, 5.002)})
    # Half the values moved by 0.002: W = 0.001, over Evidently's std floor of 0.001.
    assert evaluate(tracker).feature("x").methods[2].score == pytest.approx(1.0, rel=1e-6)


def test_the_function_alone() -> None:
    edges = np.array([-1.0, 0.0, 1.0])
    same = Side(np.array([0.2, 0.3, 0.3, 0.2]), 0.0, -3.0, 3.0)
    assert wasserstein_binned(edges, same, same) == 0.0
    # Every value moved by 0.5: the means pin the whole area at 0.5, whatever the tails look like.
    moved = Side(np.array([0.1, 0.25, 0.35, 0.3]), 0.5, -2.5, 3.5)
    inner = wasserstein_binned(edges, same, moved)
    assert inner == pytest.approx(0.5)
    assert normed_wasserstein(edges, same, moved, 2.0) == pytest.approx(0.25)
    # Unknown means: the modelled tails stand alone, and still give a positive distance.
    unknown = Side(moved.shares, None, None, None)
    assert 0.0 < wasserstein_binned(edges, same, unknown) < 1.0
