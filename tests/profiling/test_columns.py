"""One column's profile: the inference rule, exact and approximate bins, categories and stats."""

from __future__ import annotations

import numpy as np
import pytest

from sidecar.profiling.columns import CODE_MAX_DISTINCT, ColumnProfiler, infer_kind
from sidecar.profiling.readers import Column
from sidecar.reference import CARDINALITY_CAP, OTHER, Distribution, category_key


def _numbers(values: np.ndarray) -> Column:
    return Column(np.asarray(values, dtype=np.float64))


def _keys(values: list[str | None]) -> Column:
    return Column(np.full(len(values), np.nan), values)


def _profile(*columns: Column, bins: int = 10, **kwargs: object) -> Distribution:
    profiler = ColumnProfiler("x", **kwargs)  # type: ignore[arg-type]
    for column in columns:
        profiler.add(column)
    return profiler.finish(bins=bins, max_categories=50).distribution


@pytest.mark.parametrize(
    ("numbers", "texts", "code_like", "kind"),
    [
        (0, 0, False, "numeric"),  # all null
        (0, 10, False, "categorical"),  # only text
        (10, 0, True, "categorical"),  # 0/1 flags, class ids
        (10, 0, False, "numeric"),  # measurements
        (10, 10, False, "categorical"),  # text is half
        (10, 3, True, "categorical"),  # codes mixed with letters
        (100, 3, False, "numeric"),  # numbers with '?' markers
    ],
)
def test_inference_rule_table(numbers: int, texts: int, code_like: bool, kind: str) -> None:
    assert infer_kind(numbers=numbers, texts=texts, code_like=code_like) == kind


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([0, 1, 1, 0], "categorical"),
        ([1.0, 2.0, 5.0], "categorical"),  # integer-valued floats are codes too
        (list(range(CODE_MAX_DISTINCT)), "categorical"),
        (list(range(CODE_MAX_DISTINCT + 1)), "numeric"),  # too many distinct values
        ([-1, 0, 1], "numeric"),  # negative: not a code
        ([0.5, 1.0], "numeric"),  # not integer-valued
    ],
)
def test_code_like_numbers(values: list[float], kind: str) -> None:
    assert _profile(_numbers(np.array(values))).kind == kind


def test_exact_edges_are_np_quantile_edges_and_ratios_follow_bin_of() -> None:
    values = np.random.default_rng(6).normal(50, 10, 20_000)
    d = _profile(_numbers(values[:7_000]), _numbers(values[7_000:]))
    assert d.edges == tuple(np.unique(np.quantile(values, np.arange(1, 10) / 10)).tolist())
    bins = [d.bin_of(v) for v in values.tolist()]
    counted = np.bincount([b for b in bins if b is not None], minlength=d.bins)
    assert d.ratios == pytest.approx((counted / values.size).tolist(), abs=0)
    assert sum(d.ratios) == pytest.approx(1.0)


def test_ties_give_fewer_strictly_increasing_edges() -> None:
    values = np.concatenate((np.zeros(600), np.arange(400.0)))
    d = _profile(_numbers(values), bins=10)
    assert d.bins < 10
    assert all(b > a for a, b in zip(d.edges, d.edges[1:], strict=False))
    assert d.ratios[0] == pytest.approx(601 / 1000)  # every zero (and the 0 of the range) in (-inf, 0]
    assert d.kind == "numeric"


def test_approximate_edges_stay_within_the_reported_error() -> None:
    values = np.random.default_rng(8).lognormal(0, 1, 400_000)
    profiler = ColumnProfiler("x", exact_limit=50_000)
    for start in range(0, values.size, 50_000):
        profiler.add(_numbers(values[start : start + 50_000]))
    finished = profiler.finish(bins=10, max_categories=50)
    error = finished.quantile_error
    assert error is not None and 0 < error < 1e-3
    d = finished.distribution
    exact_share = np.bincount(np.searchsorted(d.edges, values, side="left"), minlength=d.bins) / values.size
    assert np.all(np.abs(np.array(d.ratios) - exact_share) <= 2 * error)
    assert np.all(np.abs(np.array(d.ratios) - 0.1) <= 2 * error + 1 / values.size)
    assert sum(d.ratios) == pytest.approx(1.0)


def test_stats_match_numpy_and_count_nulls() -> None:
    values = np.random.default_rng(9).normal(3, 2, 5_000)
    with_nulls = values.copy()
    with_nulls[::10] = np.nan
    with_nulls[1] = np.inf  # infinities are nulls too
    kept = with_nulls[np.isfinite(with_nulls)]
    s = _profile(_numbers(with_nulls[:1_234]), _numbers(with_nulls[1_234:])).stats
    assert s.count == kept.size
    assert s.mean == pytest.approx(kept.mean(), rel=1e-12)
    assert s.std == pytest.approx(kept.std(), rel=1e-10)
    assert (s.min, s.max) == (kept.min(), kept.max())
    assert s.null_share == pytest.approx(1 - kept.size / values.size)
    assert s.cardinality == np.unique(kept).size


def test_categories_most_frequent_first_with_the_tail_in_other() -> None:
    rng = np.random.default_rng(10)
    values: list[str | None] = [f"c{i}" for i in rng.zipf(1.5, 10_000).tolist()]
    values[:100] = [None] * 100
    profiler = ColumnProfiler("x")
    profiler.add(_keys(values))
    d = profiler.finish(bins=10, max_categories=5).distribution
    present = [v for v in values if v is not None]
    top = sorted({v: present.count(v) for v in set(present)}.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert d.categories == tuple(k for k, _ in top)
    assert d.ratios[:-1] == tuple(c / len(present) for _, c in top)
    assert d.ratios[-1] == pytest.approx(1 - sum(c for _, c in top) / len(present))
    assert d.labels[-1] == OTHER
    assert d.stats.null_share == pytest.approx(0.01)
    assert d.stats.mean is None


def test_number_categories_are_named_like_live_traffic() -> None:
    d = _profile(_numbers(np.array([1.0, 1.0, 2.0, 0.0])))
    assert d.categories == ("1", "0", "2")
    assert d.bin_of(1) == 0 and d.bin_of(1.0) == 0 and d.bin_of("1") == 0 and d.bin_of(7) == 3
    assert category_key(2.0) in d.categories


def test_forced_kinds_override_the_rule() -> None:
    codes = _numbers(np.array([0.0, 1.0, 1.0]))
    assert _profile(codes, forced="numeric").kind == "numeric"
    assert _profile(_numbers(np.linspace(0, 1, 50)), forced="categorical").kind == "categorical"


def test_mixed_numbers_and_markers_are_numeric_with_markers_as_nulls() -> None:
    numbers = np.random.default_rng(11).normal(size=100)
    cells: list[str | None] = [None] * 100
    cells[5] = "?"
    column = Column(np.where(np.arange(100) == 5, np.nan, numbers), cells)
    profiler = ColumnProfiler("x")
    profiler.add(column)
    finished = profiler.finish(bins=10, max_categories=50)
    assert finished.distribution.kind == "numeric"
    assert finished.distribution.stats.null_share == pytest.approx(0.01)
    assert any("--categorical x" in warning for warning in finished.warnings)


def test_cardinality_is_capped() -> None:
    d = _profile(_keys([f"id{i}" for i in range(CARDINALITY_CAP + 500)]))
    assert d.stats.cardinality == CARDINALITY_CAP
    n = _profile(_numbers(np.arange(CARDINALITY_CAP * 2.0)))
    assert n.stats.cardinality == CARDINALITY_CAP


def test_all_null_column_has_one_open_bin() -> None:
    profiler = ColumnProfiler("x")
    profiler.add(_numbers(np.full(10, np.nan)))
    finished = profiler.finish(bins=10, max_categories=50)
    assert finished.distribution.ratios == (1.0,)
    assert finished.distribution.stats.null_share == 1.0
    assert finished.warnings
