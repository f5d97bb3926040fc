"""The PSI between the two models' predictions: control's bins, the drift code's PSI, computed here independently."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidecar.experiments.shift import MAX_CATEGORIES, prediction_shift


def psi_of(reference: np.ndarray, current: np.ndarray) -> float:
    """The architecture's definition, written out: shares, 0 → 1e-4 on either side, Σ (c − r) ln(c / r)."""
    r = np.where(reference == 0, 1e-4, reference)
    c = np.where(current == 0, 1e-4, current)
    return float(np.sum((c - r) * np.log(c / r)))


def test_numeric_predictions_are_binned_at_controls_deciles() -> None:
    rng = np.random.default_rng(3)
    control = rng.normal(10.0, 2.0, size=4_000)
    challenger = rng.normal(10.6, 2.3, size=4_000)
    edges = np.unique(np.quantile(control, np.arange(1, 10) / 10))
    # Prometheus' le rule: a value on an edge goes to the bin below it.
    reference = np.array([np.sum(control <= edges[0])] + [
        np.sum((control > lo) & (control <= hi)) for lo, hi in zip(edges, edges[1:], strict=False)
    ] + [np.sum(control > edges[-1])]) / control.size  # fmt: skip
    current = np.array([np.sum(challenger <= edges[0])] + [
        np.sum((challenger > lo) & (challenger <= hi)) for lo, hi in zip(edges, edges[1:], strict=False)
    ] + [np.sum(challenger > edges[-1])]) / challenger.size  # fmt: skip
    shift = prediction_shift(control.tolist(), challenger.tolist(), numeric=True, min_samples=200)
    assert (shift.bins, shift.control, shift.challenger) == (10, 4_000, 4_000)
    assert shift.psi == pytest.approx(psi_of(reference, current), rel=1e-9)
    assert shift.verdict == ("drift" if shift.psi > 0.2 else "moderate" if shift.psi > 0.1 else "no_drift")


def test_the_same_model_has_no_shift_and_a_moved_one_drifts() -> None:
    rng = np.random.default_rng(5)
    control = rng.normal(0.0, 1.0, size=2_000).tolist()
    same = prediction_shift(control, list(control), numeric=True, min_samples=200)
    assert (same.psi, same.verdict) == (0.0, "no_drift")
    moved = prediction_shift(control, [v + 1.5 for v in control], numeric=True, min_samples=200)
    assert moved.verdict == "drift"


def test_classes_get_a_bin_each_and_one_for_the_rest() -> None:
    control = ["a"] * 600 + ["b"] * 300 + ["c"] * 100
    challenger = ["a"] * 500 + ["b"] * 300 + ["d"] * 150 + [None] * 50  # "d" is new; None is no class
    shift = prediction_shift(control, challenger, numeric=False, min_samples=100)
    reference = np.array([0.6, 0.3, 0.1, 0.0])
    current = np.array([500, 300, 0, 150]) / 950
    assert (shift.bins, shift.control, shift.challenger) == (4, 1_000, 950)
    assert shift.psi == pytest.approx(psi_of(reference, current), rel=1e-9)
    assert shift.verdict == "drift"


def test_at_most_the_most_frequent_classes_get_bins() -> None:
    control = [f"c{i}" for i in range(MAX_CATEGORIES + 20) for _ in range(5)]
    shift = prediction_shift(control, control, numeric=False, min_samples=1)
    assert shift.bins == MAX_CATEGORIES + 1 and shift.psi == 0.0


def test_too_few_predictions_on_either_side_give_no_score() -> None:
    shift = prediction_shift([1.0] * 500, [1.0, "x"] * 50, numeric=True, min_samples=100)
    assert (shift.verdict, shift.control, shift.challenger) == ("insufficient_data", 500, 50)
    assert math.isnan(shift.psi)
