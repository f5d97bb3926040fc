"""The window ring: slices, expiry, binning and the cumulative per-bin totals (fake clock, no sleeping)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.drift.window import Window
from sidecar.reference import Distribution, Stats

AGE = Distribution.numeric(edges=(30.0, 45.0), ratios=(0.3, 0.4, 0.3), stats=Stats(count=1000, mean=40.0))
COLOUR = Distribution.categorical(categories=("red", "1"), ratios=(0.5, 0.4, 0.1), stats=Stats(count=1000))


def window(slices: int = 5, slice_seconds: float = 10.0) -> Window:
    return Window([("age", AGE), ("colour", COLOUR)], slices=slices, slice_seconds=slice_seconds, now=0.0)


def age_counts(w: Window, now: float) -> list[float]:
    return [float(c) for c in w.totals(now).counts[w.channels[0].bins]]


def test_counts_follow_bins_and_weights() -> None:
    w = window()
    for value, weight in ((20.0, 1.0), (30.0, 2.0), (31, 4.0), (99.5, 8.0)):
        w.add([value, "red"], weight)
    assert age_counts(w, 0.0) == [3.0, 4.0, 8.0]  # 30 is in (−inf, 30]: edges are upper bounds
    totals = w.totals(0.0)
    assert totals.rows == 4
    assert totals.weight == 15.0
    assert totals.weight2 == 1 + 4 + 16 + 64


def test_old_slices_expire() -> None:
    w = window(slices=5, slice_seconds=10.0)  # a 50 s window
    w.add([20.0, "red"], 1.0)  # slice 0
    w.advance(25.0)
    w.add([40.0, "red"], 1.0)  # slice 2
    assert age_counts(w, 25.0) == [1.0, 1.0, 0.0]
    assert age_counts(w, 49.9) == [1.0, 1.0, 0.0]  # slices 0..4
    assert age_counts(w, 50.0) == [0.0, 1.0, 0.0]  # slices 1..5: slice 0 has expired
    assert age_counts(w, 70.0) == [0.0, 0.0, 0.0]  # slices 3..7
    assert w.totals(70.0).rows == 0


def test_a_slot_is_reused_when_its_slice_comes_round_again() -> None:
    w = window(slices=3, slice_seconds=1.0)
    w.add([20.0, "red"], 1.0)  # slice 0, slot 0
    w.advance(3.0)  # slice 3 also uses slot 0: slice 0 is folded, then expired
    w.add([99.0, "red"], 1.0)
    w.advance(4.0)  # slice 3 is folded into slot 0, over slice 0
    assert age_counts(w, 4.0) == [0.0, 0.0, 1.0]
    assert [total for _, _, total in w.observations()][:3] == [1.0, 0.0, 1.0]


def test_slices_without_traffic_are_zero() -> None:
    w = window(slices=5, slice_seconds=10.0)
    for t in (0.0, 30.0):
        w.advance(t)
        w.add([20.0, "red"], 1.0)
    assert w.totals(30.0).rows == 2
    assert age_counts(w, 30.0) == [2.0, 0.0, 0.0]


def test_a_clock_that_steps_back_keeps_counting_in_the_current_slice() -> None:
    w = window(slices=5, slice_seconds=10.0)
    w.advance(30.0)
    w.add([20.0, "red"], 1.0)
    w.advance(12.0)  # NTP stepped the clock back
    w.add([20.0, "red"], 1.0)
    assert age_counts(w, 30.0) == [2.0, 0.0, 0.0]


def test_observations_are_cumulative_and_never_expire() -> None:
    w = window(slices=2, slice_seconds=1.0)
    seen: list[list[float]] = []
    for t in range(6):
        w.advance(float(t))
        w.add([40.0, "red"], 0.5)
        seen.append([total for _, _, total in w.observations()])
    assert seen[-1][:3] == [0.0, 3.0, 0.0]
    assert all(
        b >= a for before, after in zip(seen, seen[1:], strict=False) for a, b in zip(before, after, strict=True)
    )
    labels = [(channel.name, label) for channel, label, _ in w.observations()]
    assert labels == [
        ("age", "0"),
        ("age", "1"),
        ("age", "2"),
        ("colour", "red"),
        ("colour", "1"),
        ("colour", "__other__"),
    ]


@pytest.mark.parametrize("value", [None, math.nan, "n/a", [1], {"a": 1}, float("nan"), "nan", 10**400], ids=repr)
def test_what_is_not_a_number_counts_as_null(value: Any) -> None:
    w = window()
    w.add([value, None], 2.0)
    totals = w.totals(0.0)
    assert totals.counts.sum() == 0.0
    assert totals.nulls.tolist() == [1.0, 1.0]
    assert totals.null_weight.tolist() == [2.0, 2.0]


def test_categorical_values_are_named_as_the_profile_names_them() -> None:
    w = window()
    for value in ("red", 1, 1.0, "1", "blue", True):
        w.add([None, value], 1.0)
    colour = w.totals(0.0).counts[w.channels[1].bins].tolist()
    assert colour == [1.0, 3.0, 2.0]  # 1, 1.0 and "1" are category "1"; "blue" and true are unseen


_values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.booleans(),
    st.sampled_from(["3.5", "abc", "30", " 45 ", "inf"]),
)


@given(values=st.lists(_values, max_size=30))
def test_bins_agree_with_the_profile(values: list[Any]) -> None:
    w = window()
    for value in values:
        w.add([value, value], 1.0)
    totals = w.totals(0.0)
    for j, dist in enumerate((AGE, COLOUR)):
        expected = np.zeros(dist.bins)
        for value in values:
            try:
                b = dist.bin_of(value)
            except TypeError:  # category_key cannot name 2.0**64; the window counts it as unseen
                b = dist.bins - 1
            if b is not None:
                expected[b] += 1.0
        assert totals.counts[w.channels[j].bins].tolist() == expected.tolist()
        assert totals.nulls[j] == len(values) - expected.sum()


@pytest.mark.parametrize("seed", range(3))
def test_totals_equal_a_recount_of_the_events_in_the_window(seed: int) -> None:
    """Random arrival times, with gaps longer than the window: the ring agrees with counting from scratch."""
    rng = np.random.default_rng(seed)
    slices, width = 6, 10.0
    times = np.sort(np.concatenate((rng.uniform(0, 100, 300), rng.uniform(250, 300, 100))))
    ages = rng.normal(38.0, 10.0, len(times))
    weights = rng.choice([1.0, 2.0, 4.0], len(times))
    w = Window([("age", AGE), ("colour", COLOUR)], slices=slices, slice_seconds=width, now=0.0)
    for t, age, weight in zip(times, ages, weights, strict=True):
        w.advance(float(t))
        w.add([float(age), "red"], float(weight))
        now = float(t) + rng.uniform(0.0, 30.0)  # evaluate a little later, as the evaluator does
        inside = (times <= t) & (np.floor(times / width) > np.floor(now / width) - slices)
        totals = w.totals(now)
        expected = np.bincount(np.searchsorted(AGE.edges, ages[inside]), weights[inside], minlength=3)
        assert totals.counts[w.channels[0].bins] == pytest.approx(expected)
        assert totals.rows == inside.sum()
        if inside.any():
            assert totals.minimum[0] == ages[inside].min()
            assert totals.maximum[0] == ages[inside].max()


def _recount(values: list[Any], weights: list[float], dist: Distribution) -> tuple[list[float], float]:
    """Weighted bin counts and null count of one channel, value by value through Distribution.bin_of."""
    counts, nulls = [0.0] * dist.bins, 0.0
    for value, weight in zip(values, weights, strict=True):
        try:
            b = dist.bin_of(value)
        except TypeError:  # category_key cannot name 2.0**64; the window counts it as unseen
            b = dist.bins - 1
        if b is None:
            nulls += 1.0
        else:
            counts[b] += weight
    return counts, nulls


@given(
    rows=st.lists(st.tuples(_values, _values, st.sampled_from([1.0, 2.0, 10.0])), min_size=1, max_size=40),
    many_edges=st.booleans(),
)
def test_a_block_counts_what_its_records_count_one_by_one(rows: list[tuple[Any, Any, float]], many_edges: bool) -> None:
    """The columnar block against a value-by-value recount, on both binning paths (edge grid and searchsorted)."""
    age = Distribution.numeric(edges=tuple(range(0, 80, 2)), ratios=(1 / 41,) * 41, stats=Stats(count=1, mean=40.0))
    dist = age if many_edges else AGE
    w = Window([("age", dist), ("colour", COLOUR)], slices=5, slice_seconds=10.0, now=0.0)
    ages, colours, weights = (list(column) for column in zip(*rows, strict=True))
    w.add_block([(a,) for a in ages], [(c,) for c in colours], weights)
    totals = w.totals(0.0)
    for j, (values, d) in enumerate(((ages, dist), (colours, COLOUR))):
        counts, nulls = _recount(values, weights, d)
        assert totals.counts[w.channels[j].bins].tolist() == counts
        assert totals.nulls[j] == nulls
    assert totals.rows == len(rows)
    assert totals.weight == sum(weights)
    numbers = [float(a) for a in ages if dist.bin_of(a) is not None]
    if numbers:
        assert totals.minimum[0] == min(numbers)
        assert totals.maximum[0] == max(numbers)
        assert totals.distinct[0] == (len(set(numbers)), True)


def test_a_block_keeps_the_moments_and_the_distinct_cap() -> None:
    rng = np.random.default_rng(7)
    ages = rng.normal(40.0, 10.0, 1000)
    weights = rng.choice([1.0, 4.0], 1000)
    w = window()
    w.add_block([(a,) for a in ages.tolist()], [("red",)] * 1000, weights.tolist())
    totals = w.totals(0.0)
    d = ages - AGE.stats.mean  # type: ignore[operator]
    assert totals.sums[0] == pytest.approx(float((weights * d).sum()))
    assert totals.squares[0] == pytest.approx(float((weights * d * d).sum()))
    assert totals.distinct == ((128, False), (1, True))  # a continuous feature fills the per-slice cap at once


def test_remembered_category_names_keep_1_1_0_and_true_apart_across_blocks() -> None:
    w = window()
    values: list[Any] = [1, True, 1.0, 2.0**64, math.nan, [1], "1", False]
    for _ in range(3):  # the names remembered in the first block serve the later ones
        w.add_block([(None,)] * len(values), [(v,) for v in values], [1.0] * len(values))
    colour = w.totals(0.0).counts[w.channels[1].bins].tolist()
    counts, nulls = _recount(values * 3, [1.0] * 24, COLOUR)
    assert colour == counts == [0.0, 9.0, 15.0]  # 1, 1.0 and "1" are category "1"; the rest unseen
    assert nulls == 0.0


@pytest.mark.parametrize("weighted", [False, True])
def test_columns_count_what_the_same_rows_count_as_a_block(weighted: bool) -> None:
    """A table given column by column, over several chunks, with nulls and unseen categories: as its rows would."""
    rng = np.random.default_rng(11)
    n = 5000  # two full chunks and a part
    ages = rng.normal(38.0, 10.0, n)
    ages[rng.random(n) < 0.1] = np.nan
    colours: list[str | None] = rng.choice(np.array(["red", "1", "blue"]), n).tolist()
    for i in rng.choice(n, 300, replace=False).tolist():
        colours[i] = None
    weights = rng.choice([1.0, 2.5], n) if weighted else np.full(n, 2.0)
    by_rows, by_columns = window(), window()
    by_rows.add_block([(a,) for a in ages.tolist()], [(c,) for c in colours], weights.tolist())
    by_columns.add_columns([ages], [colours], weights)
    rows, columns = by_rows.totals(0.0), by_columns.totals(0.0)
    assert columns.counts.tolist() == pytest.approx(rows.counts.tolist(), rel=1e-12)
    assert columns.counts.sum() + (columns.null_weight.sum()) == pytest.approx(2 * float(weights.sum()))
    for field in ("rows", "weight", "weight2", "distinct"):
        assert getattr(columns, field) == getattr(rows, field), field
    for field in ("nulls", "null_weight", "null_weight2", "minimum", "maximum"):
        assert getattr(columns, field).tolist() == getattr(rows, field).tolist(), field
    assert columns.sums.tolist() == pytest.approx(rows.sums.tolist(), rel=1e-12)
    assert columns.squares.tolist() == pytest.approx(rows.squares.tolist(), rel=1e-12)
    expected, _ = _recount(ages.tolist(), weights.tolist(), AGE)
    assert columns.counts[by_columns.channels[0].bins].tolist() == pytest.approx(expected, rel=1e-12)
    assert columns.nulls.tolist() == [float(np.isnan(ages).sum()), 300.0]


def test_columns_that_do_not_fit_the_channels_are_refused() -> None:
    w = window()
    with pytest.raises(ValueError, match="1 numeric and 1 categorical columns, not 2 and 1"):
        w.add_columns([np.zeros(2), np.zeros(2)], [["red", "red"]], np.ones(2))
    with pytest.raises(ValueError, match="every column 2 rows long"):
        w.add_columns([np.zeros(3)], [["red", "red"]], np.ones(2))
    assert w.totals(0.0).rows == 0
