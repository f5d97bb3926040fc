"""evaluate() returns immutable values: frozen dataclasses of tuples and Python scalars."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from sidecar.drift import DriftSnapshot, DriftTracker, collect, compute, evaluate
from tests.drift.helpers import FakeClock, categorical, numeric, profile, record


def snapshot() -> DriftSnapshot:
    rng = np.random.default_rng(9)
    tracker = DriftTracker(
        profile(
            {"x": numeric(rng.normal(size=1000)), "c": categorical(["a", "b"], [0.5, 0.5], 1000)},
            outputs={"prediction": categorical(["a", "b"], [0.5, 0.5], 1000)},
            target=categorical(["a", "b"], [0.5, 0.5], 1000),
        ),
        min_samples=10,
        clock=FakeClock(),
    )
    tracker.update([record({"x": float(v), "c": "a"}, prediction="b") for v in rng.normal(size=300)])
    tracker.update_labels([("a", 1.0)] * 20)
    return evaluate(tracker)


def walk(value: Any) -> list[Any]:
    """Every value reachable from a snapshot."""
    if dataclasses.is_dataclass(value):
        return [value, *(v for f in dataclasses.fields(value) for v in walk(getattr(value, f.name)))]
    if isinstance(value, tuple):
        return [value, *(v for item in value for v in walk(item))]
    return [value]


def test_every_part_is_frozen() -> None:
    result = snapshot()
    parts = walk(result)
    assert all(dataclasses.is_dataclass(p) is False or p.__dataclass_params__.frozen for p in parts)
    # Only immutable leaves: no lists, dicts or numpy arrays, and plain Python numbers.
    leaves = {type(p) for p in parts if not dataclasses.is_dataclass(p) and not isinstance(p, tuple)}
    assert leaves <= {str, float, int, bool, type(None)}
    hash(result)  # hashable all the way down


def test_assignment_is_refused() -> None:
    result = snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.verdict = "drift"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.features[0].stats.mean = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.features[0].current[0] = 1.0  # type: ignore[index]


def test_the_snapshot_does_not_change_when_the_tracker_does() -> None:
    rng = np.random.default_rng(10)
    tracker = DriftTracker(profile({"x": numeric(rng.normal(size=1000))}), min_samples=10, clock=FakeClock())
    tracker.update([record({"x": 0.0})] * 20)
    before = evaluate(tracker)
    copy = dataclasses.replace(before)
    tracker.update([record({"x": 3.0})] * 20)
    assert before == copy
    assert evaluate(tracker) != before


def test_lookups() -> None:
    result = snapshot()
    x = result.feature("x")
    assert [m.method for m in x.methods] == ["psi", "ks", "wasserstein"]
    assert x.method("chi2") is None and x.method("jensenshannon") is None
    assert [m.method for m in result.feature("c").methods] == ["psi", "chi2", "jensenshannon"]
    # The bins' display names, not the metrics' bin label values ("0".."9").
    assert len(x.labels) == 10 and x.labels[0].startswith("≤ ") and x.labels[-1].startswith("> ")
    assert result.feature("c").labels == ("a", "b", "(other)")
    assert len(x.reference) == len(x.current) == 10
    with pytest.raises(KeyError):
        result.feature("nope")


def test_collected_totals_are_copies_so_compute_can_run_on_another_thread() -> None:
    rng = np.random.default_rng(11)
    tracker = DriftTracker(profile({"x": numeric(rng.normal(size=1000))}), min_samples=10, clock=FakeClock())
    tracker.update([record({"x": float(v)}) for v in rng.normal(size=50)])
    collected = collect(tracker)
    expected = evaluate(tracker)
    # The tracker moves on (as the event loop would) before compute() runs.
    tracker.update([record({"x": 5.0})] * 50)
    assert compute(collected) == expected
