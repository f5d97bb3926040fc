"""Agreement between two classifiers' predictions, and Wilson's interval as statsmodels computes it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from sidecar.experiments.agreement import agreement, wilson


@pytest.mark.parametrize(
    ("successes", "n", "alpha"),
    [(0, 10, 0.05), (10, 10, 0.05), (1, 3, 0.05), (940, 1_000, 0.05), (51, 100, 0.1), (99_000, 100_000, 0.01)],
)
def test_wilson_equals_statsmodels(successes: int, n: int, alpha: float) -> None:
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    assert wilson(successes, n, alpha=alpha) == pytest.approx((low, high), rel=1e-9, abs=1e-12)


def test_wilson_without_rows_is_undefined() -> None:
    assert all(math.isnan(bound) for bound in wilson(0, 0, alpha=0.05))


def test_classes_compare_as_the_performance_metrics_compare_them() -> None:
    control = ["setosa", 1, True, "a", None, 2.0, "b"]
    challenger = ["setosa", 1.0, "true", "b", "a", 2, ""]
    result = agreement(control, challenger, alpha=0.05)
    # 1 and 1.0 are one class, True and "true" too, 2.0 and 2; None and "" are no class: those rows count for neither.
    assert (result.n, result.agreed) == (5, 4)
    assert result.rate == pytest.approx(0.8)
    assert (result.ci_low, result.ci_high) == pytest.approx(proportion_confint(4, 5, alpha=0.05, method="wilson"))


def test_a_seeded_sample_agrees_at_its_rate() -> None:
    rng = np.random.default_rng(7)
    control = rng.integers(0, 3, size=5_000).tolist()
    flip = rng.random(5_000) < 0.1
    challenger = [(c + 1) % 3 if f else c for c, f in zip(control, flip, strict=True)]
    result = agreement(control, challenger, alpha=0.05)
    assert result.agreed == 5_000 - int(flip.sum())
    assert result.ci_low < result.rate < result.ci_high and result.ci_low < 0.9 < result.ci_high


def test_unpaired_predictions_are_refused() -> None:
    with pytest.raises(ValueError, match="paired"):
        agreement(["a"], ["a", "b"], alpha=0.05)
