"""The Jensen-Shannon distance from the bins, against scipy's on the raw values."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.spatial import distance  # type: ignore[import-untyped]

from sidecar.drift import DriftTracker, evaluate, jensenshannon
from tests.drift.helpers import FakeClock, categorical, profile

CATEGORIES = ["a", "b", "c", "d"]


def _scipy_on_values(reference: list[str], current: list[str]) -> float:
    """scipy on the value counts over the union of the values, nothing lumped."""
    names = sorted(set(reference) | set(current))
    ref, cur = Counter(reference), Counter(current)
    return float(distance.jensenshannon([ref[n] for n in names], [cur[n] for n in names]))


@pytest.mark.parametrize("seed", range(3))
def test_exact_from_the_bins_even_with_unseen_categories_lumped(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.choice(CATEGORIES, 20_000, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    # The current has the reference's categories reweighted, and three the reference never had.
    current = rng.choice([*CATEGORIES, "x", "y", "z"], 3_000, p=[0.3, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02]).tolist()
    counts = Counter(reference)
    shares = [counts[c] / len(reference) for c in CATEGORIES]
    tracker = DriftTracker(profile({"c": categorical(CATEGORIES, shares, len(reference))}), clock=FakeClock())
    tracker.update_columns(len(current), {"c": current})
    result = evaluate(tracker).feature("c").method("jensenshannon")
    assert result is not None and result.score is not None
    # The unseen categories share the __other__ bin, where the reference has 0: each term is q·ln 2, and adds up.
    assert result.score == pytest.approx(_scipy_on_values(reference, current), rel=1e-9)


def test_a_reference_with_an_other_share_gives_a_lower_bound() -> None:
    # The profile lumped "d" and "e" into __other__; the current moves mass from "d" to "e" inside it.
    rng = np.random.default_rng(7)
    reference = rng.choice(["a", "b", "d", "e"], 20_000, p=[0.4, 0.4, 0.15, 0.05]).tolist()
    current = rng.choice(["a", "b", "d", "e"], 3_000, p=[0.4, 0.4, 0.05, 0.15]).tolist()
    counts = Counter(reference)
    tracker = DriftTracker(
        profile({"c": categorical(["a", "b"], [counts["a"] / 20_000, counts["b"] / 20_000], 20_000)}),
        clock=FakeClock(),
    )
    tracker.update_columns(len(current), {"c": current})
    result = evaluate(tracker).feature("c").method("jensenshannon")
    assert result is not None and result.score is not None
    assert result.score < _scipy_on_values(reference, current)


def test_golden_values() -> None:
    assert jensenshannon(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    # No category in common: the largest distance, √ln 2.
    assert jensenshannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.sqrt(math.log(2)))
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.1, 0.6, 0.3])
    assert jensenshannon(p, q) == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
