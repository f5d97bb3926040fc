"""Distinct values: exact while no slice fills up, a lower bound after, merged across slices."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.drift.distinct import CAP, SliceDistinct, count_distinct


def count(values: list[Any], *, numeric: bool, slices: int = 1) -> tuple[int, bool]:
    """Deal ``values`` round-robin into ``slices`` slices, fold each as the window does, then count."""
    distinct = SliceDistinct([numeric])
    codes = np.zeros((slices, 1, CAP), dtype=np.int64)
    sizes = np.zeros((slices, 1), dtype=np.int64)
    for s in range(slices):
        seen = distinct.seen[0]
        for value in values[s::slices]:
            if len(seen) < CAP:
                seen.add(value)
        distinct.fold(codes[s], sizes[s])
    return count_distinct(codes[:, 0], sizes[:, 0], distinct.codes()[0])


def test_exact_while_no_slice_fills_up() -> None:
    assert count([f"user-{i % 50}" for i in range(10_000)], numeric=False) == (50, True)
    assert count([], numeric=True) == (0, True)


def test_numbers_never_collide() -> None:
    # hash(-1.0) == hash(-2.0) in CPython; their bits differ. 0.0 and -0.0 are one value.
    assert count([-1.0, -2.0, 0.0, -0.0, 1.0], numeric=True) == (4, True)
    assert count([-0.0, 0.0, 0.0], numeric=True, slices=3) == (1, True)


def test_slices_merge_exactly() -> None:
    values = [float(i % 500) for i in range(5_000)]
    assert count(values, numeric=True, slices=10) == (500, True)  # 50 values per slice, 500 in all
    categories = [f"c{i % 90}" for i in range(3_000)]
    assert count(categories, numeric=False, slices=7) == (90, True)


def test_a_full_slice_means_at_least_the_cap() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=5_000).tolist()
    assert count(values, numeric=True) == (CAP, False)
    assert count(values, numeric=True, slices=4) == (CAP, False)
    assert count([float(i) for i in range(CAP)], numeric=True) == (CAP, False)  # full, though none was turned away
    assert count([float(i) for i in range(CAP - 1)], numeric=True) == (CAP - 1, True)
