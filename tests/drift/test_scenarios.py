"""The issue's scenarios, seeded: 20 features, 20,000 reference rows, 3,000 current records.

Under PSI alone, a 0.3σ shift of one feature in twenty reads as "no_drift"
or "moderate" (PSI about 0.07-0.12); a raw p < 0.05 flags one unshifted
feature in twenty by chance, and at 100,000 records flags shifts too small
to matter. The combined rule has to get all three right, in every seed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from sidecar.drift import ColumnValues, DriftSnapshot, DriftTracker, VerdictRule, evaluate
from sidecar.reference import Distribution, ReferenceProfile
from tests.drift.helpers import FakeClock, categorical, numeric, profile

NUMERIC, CATEGORICAL = 15, 5
CATEGORIES = np.array(list("abcdefghi"))
FAVOUR = np.arange(9, 0, -1.0) / np.arange(9, 0, -1.0).sum()
SEEDS = range(20)


def columns(rng: np.random.Generator, rows: int, shift: Mapping[str, float] | None = None) -> dict[str, ColumnValues]:
    """Numeric ``n0…`` from N(shift, 1), categorical ``c0…`` over nine letters, the first ones favoured."""
    shift = shift or {}
    table: dict[str, ColumnValues] = {f"n{i}": rng.normal(shift.get(f"n{i}", 0.0), 1.0, rows) for i in range(NUMERIC)}
    for i in range(CATEGORICAL):
        table[f"c{i}"] = rng.choice(CATEGORIES, rows, p=FAVOUR).tolist()
    return table


def reference_profile(rng: np.random.Generator) -> ReferenceProfile:
    features: dict[str, Distribution] = {}
    for name, values in columns(rng, 20_000).items():
        if isinstance(values, np.ndarray):
            features[name] = numeric(values)
        else:
            found, counts = np.unique(np.asarray(values), return_counts=True)
            features[name] = categorical(found.tolist(), (counts / counts.sum()).tolist(), 20_000)
    return profile(features)


def judged(reference: ReferenceProfile, table: dict[str, ColumnValues], rows: int, rule: VerdictRule) -> DriftSnapshot:
    tracker = DriftTracker(reference, rule=rule, clock=FakeClock())
    tracker.update_columns(rows, table)
    return evaluate(tracker)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_shift_of_a_third_of_a_sigma_is_drift_and_nothing_else_is(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = reference_profile(rng)
    table = columns(rng, 3_000, {"n0": 0.3})
    snapshot = judged(reference, table, 3_000, VerdictRule())
    assert {f.name: f.verdict for f in snapshot.features if f.verdict == "drift"} == {"n0": "drift"}
    shifted = snapshot.feature("n0")
    psi, test, effect = shifted.methods
    assert test.corrected_pvalue is not None and test.corrected_pvalue < 0.05  # real
    assert effect.score is not None and effect.score >= 0.1  # material
    # The same rows under PSI alone: what the sidecar said before, "no_drift" or "moderate".
    assert psi.score is not None and psi.score < 0.2
    assert judged(reference, table, 3_000, VerdictRule("psi")).feature("n0").verdict in ("no_drift", "moderate")


@pytest.mark.parametrize("seed", SEEDS)
def test_twenty_unshifted_features_stay_below_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    snapshot = judged(reference_profile(rng), columns(rng, 3_000), 3_000, VerdictRule())
    assert [f.name for f in snapshot.features if f.verdict == "drift"] == []
    assert snapshot.verdict == "no_drift" and snapshot.drifted_share == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_a_twentieth_of_a_sigma_in_a_hundred_thousand_records_is_not_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    snapshot = judged(reference_profile(rng), columns(rng, 100_000, {"n0": 0.05}), 100_000, VerdictRule())
    shifted = snapshot.feature("n0")
    assert shifted.verdict != "drift"
    # Real at this size (Holm-corrected p far below 0.05 in these seeds), but not material.
    test, effect = shifted.methods[1], shifted.methods[2]
    assert test.corrected_pvalue is not None and test.corrected_pvalue < 0.05
    assert effect.score is not None and effect.score < 0.1
    assert [f.name for f in snapshot.features if f.verdict == "drift"] == []
