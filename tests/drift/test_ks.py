"""KS: against scipy.stats.ks_2samp where bins resolve the samples, against the binned-CDF definition otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.drift import DriftTracker, evaluate, ks_binned
from sidecar.drift.ks import kstwo_sf
from tests.drift.helpers import FakeClock, Floats, numeric_with_edges, profile, records


def shares(sample: Floats, edges: Floats) -> Floats:
    counts = np.bincount(np.searchsorted(edges, sample, side="left"), minlength=len(edges) + 1)
    return np.asarray(counts / counts.sum(), dtype=np.float64)


@pytest.mark.parametrize("seed", range(4))
def test_equals_ks_2samp_when_every_value_has_its_own_bin(seed: int) -> None:
    """From samples: integer values, an edge at each, so the binned CDFs are the empirical ones."""
    rng = np.random.default_rng(seed)
    ref = rng.poisson(20.0, 3000).astype(float)
    cur = rng.poisson(20.6, 700).astype(float)
    edges = np.unique(np.concatenate((ref, cur)))[:-1]
    d, p = ks_binned(shares(ref, edges), len(ref), shares(cur, edges), len(cur))
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_coarse_bins_follow_the_binned_cdf_definition() -> None:
    """The binned-CDF definition: D over the inner edges, p = kstwo.sf(D, round(n·m/(n+m)))."""
    rng = np.random.default_rng(7)
    ref = rng.normal(0.0, 1.0, 5000)
    cur = rng.normal(0.1, 1.0, 800)
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    r, c = shares(ref, edges), shares(cur, edges)
    d, p = ks_binned(r, 5000, c, 800)
    expected_d = np.max(np.abs(np.cumsum(r) - np.cumsum(c)))
    assert d == pytest.approx(expected_d, abs=1e-12)
    assert p == pytest.approx(stats.kstwo.sf(expected_d, round(5000 * 800 / 5800)), rel=1e-9)
    # Coarse bins can only lose resolution: the samples' D is at least the binned one.
    assert stats.ks_2samp(ref, cur).statistic >= d


@pytest.mark.parametrize(
    ("n", "d"),
    [(50, 0.1), (140, 0.3), (141, 0.2), (500, 0.02), (2000, 0.04), (7500, 0.08), (30000, 0.01), (100_000, 0.006)],
)
def test_kstwo_sf_equals_scipy_in_every_branch(n: int, d: float) -> None:
    """The last four lie in the branch that is computed in numpy rather than by scipy.special.smirnov."""
    assert kstwo_sf(d, n) == pytest.approx(stats.kstwo.sf(d, n), rel=1e-8)


def test_tracker_ks_equals_ks_2samp_on_the_samples() -> None:
    """From samples, end to end: a profile with an edge at every value, records with weight 1."""
    rng = np.random.default_rng(11)
    ref = rng.integers(0, 30, 4000).astype(float)
    cur = rng.integers(1, 31, 900).astype(float)
    edges = np.arange(0.0, 30.0)
    clock = FakeClock()
    tracker = DriftTracker(profile({"x": numeric_with_edges(ref, edges)}), clock=clock)
    tracker.update(records({"x": cur.tolist()}))
    ks = evaluate(tracker).feature("x").method("ks")
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert ks is not None
    assert ks.score == pytest.approx(expected.statistic, abs=1e-12)
    assert ks.pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    assert ks.verdict == "drift"
