"""PSI against an independent NumPy computation of the formula in docs/architecture.md ("Statistics")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidecar.drift import EPSILON, psi, psi_verdict


def design_psi(ref: list[float], cur: list[float]) -> float:
    """Σ (cur_i − ref_i) · ln(cur_i / ref_i), a share of 0 read as 1e-4, term by term."""
    total = 0.0
    for r, c in zip(ref, cur, strict=True):
        r, c = r or 1e-4, c or 1e-4
        total += (c - r) * math.log(c / r)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_the_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.dirichlet(np.ones(10))
    cur = rng.dirichlet(np.ones(10))
    assert psi(ref, cur) == pytest.approx(design_psi(ref.tolist(), cur.tolist()), rel=1e-12)


def test_empty_bins_become_epsilon() -> None:
    assert EPSILON == 1e-4
    ref = np.array([0.5, 0.5, 0.0])
    cur = np.array([0.4, 0.4, 0.2])
    expected = 2 * (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(psi(cur, ref))


def test_golden_value() -> None:
    # 0.1·ln(1.2) ... computed by hand: (0.6-0.5)ln(0.6/0.5) + (0.4-0.5)ln(0.4/0.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.6, 0.4])) == pytest.approx(0.040546510810816, rel=1e-12)


def test_identical_shares_have_zero_psi() -> None:
    shares = np.array([0.2, 0.3, 0.5])
    assert psi(shares, shares) == 0.0


@pytest.mark.parametrize(
    ("score", "verdict"),
    [(0.0, "no_drift"), (0.1, "no_drift"), (0.1000001, "moderate"), (0.2, "moderate"), (0.2000001, "drift")],
)
def test_verdict_thresholds(score: float, verdict: str) -> None:
    assert psi_verdict(score) == verdict
