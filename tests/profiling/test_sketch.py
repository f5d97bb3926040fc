"""The quantile sketch keeps its stated rank-error bound, merges, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from sidecar.profiling.sketch import QuantileSketch

QS = np.arange(1, 10) / 10


def _fed(values: np.ndarray, chunk: int = 50_000, capacity: int = 32_768) -> QuantileSketch:
    sketch = QuantileSketch(capacity)
    for start in range(0, values.size, chunk):
        sketch.update(values[start : start + chunk])
    return sketch


def _rank_errors(sorted_values: np.ndarray, answers: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """How far each answer's rank is from q·n, in the sketch's own terms: #{x < v} - qn and qn - #{x <= v}."""
    n = sorted_values.size
    below = np.searchsorted(sorted_values, answers, side="left") / n
    at_most = np.searchsorted(sorted_values, answers, side="right") / n
    errors: np.ndarray = np.maximum(below - qs, qs - at_most)
    return errors


def test_two_million_values_stay_within_the_documented_bound() -> None:
    values = np.random.default_rng(1).lognormal(0, 1, 2_000_000)
    sketch = _fed(values)
    exact = np.sort(values)
    bound = sketch.rank_error()
    assert 0 < bound < 5e-4  # E <= n * levels / capacity, documented as ~0.03 % at 10M
    assert np.all(_rank_errors(exact, sketch.quantiles(QS.tolist()), QS) <= bound)
    # The value-space check people care about: each edge sits between the exact quantiles at q ± bound.
    answers = sketch.quantiles(QS.tolist())
    assert np.all(answers >= np.quantile(exact, np.clip(QS - bound, 0, 1), method="lower"))
    assert np.all(answers <= np.quantile(exact, np.clip(QS + bound, 0, 1), method="higher"))


def test_cdf_is_within_the_bound_of_the_exact_share() -> None:
    values = np.random.default_rng(2).normal(size=1_000_000)
    sketch = _fed(values, capacity=1_024)  # a small capacity, so the bound is wide enough to matter
    points = np.linspace(-3, 3, 25)
    exact = np.searchsorted(np.sort(values), points, side="right") / values.size
    assert np.all(np.abs(sketch.cdf(points.tolist()) - exact) <= sketch.rank_error())
    assert sketch.rank_error() > 1e-3


def test_merged_sketches_keep_the_bound_for_the_union() -> None:
    rng = np.random.default_rng(3)
    left, right = rng.normal(0, 1, 700_000), rng.normal(2, 1, 900_000)
    merged = _fed(left, capacity=4_096)
    merged.merge(_fed(right, capacity=4_096))
    union = np.sort(np.concatenate((left, right)))
    assert merged.count == union.size
    assert np.all(_rank_errors(union, merged.quantiles(QS.tolist()), QS) <= merged.rank_error())


def test_small_input_is_exact_and_answers_are_stored_values() -> None:
    sketch = QuantileSketch(capacity=64)
    sketch.update([5.0, 1.0, 3.0, 2.0, 4.0])
    assert sketch.rank_error() == 0.0
    assert sketch.quantiles([0.2, 0.5, 1.0]).tolist() == [1.0, 3.0, 5.0]
    assert sketch.cdf([0.0, 3.0, 9.0]).tolist() == [0.0, 0.6, 1.0]


def test_same_input_same_answers() -> None:
    values = np.random.default_rng(4).random(300_000)
    assert (
        _fed(values, capacity=1_024).quantiles(QS.tolist()).tolist()
        == _fed(values, capacity=1_024).quantiles(QS.tolist()).tolist()
    )


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        QuantileSketch(capacity=3)
    with pytest.raises(ValueError, match="empty"):
        QuantileSketch().quantiles([0.5])
    with pytest.raises(ValueError, match="capacity"):
        QuantileSketch(64).merge(QuantileSketch(128))
