"""Holm and Bonferroni equal statsmodels' multipletests; none leaves the p-values alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]

from sidecar.experiments.correction import adjust


@pytest.mark.parametrize("method", ["holm", "bonferroni"])
@pytest.mark.parametrize("seed", range(5))
def test_equals_statsmodels(method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pvalues = np.concatenate([rng.uniform(0, 0.02, 3), rng.uniform(0, 1, 6), [0.01, 0.01]])
    rng.shuffle(pvalues)
    expected = multipletests(pvalues, method=method)[1]
    assert adjust(pvalues.tolist(), "holm" if method == "holm" else "bonferroni") == pytest.approx(expected, rel=1e-12)


def test_none_and_the_missing() -> None:
    assert adjust([0.01, 0.2], "none") == (0.01, 0.2)
    # A metric that could not be tested counts as no evidence, and still counts in m.
    assert adjust([math.nan, 0.01], "bonferroni") == (1.0, 0.02)
    assert adjust([math.nan, 0.01], "holm") == (1.0, 0.02)
    assert adjust([math.nan], "none") == (1.0,)
    assert adjust([], "holm") == ()
