"""McNemar's test equals statsmodels' mcnemar: exact below 25 discordant pairs, chi-square with correction above."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar as oracle  # type: ignore[import-untyped]

from sidecar.experiments.mcnemar import EXACT_BELOW, mcnemar


@pytest.mark.parametrize(
    ("b", "c"),
    [(0, 0), (0, 1), (1, 0), (3, 3), (5, 1), (2, 9), (12, 12), (0, 24), (13, 11)],
)
def test_few_discordant_pairs_take_the_exact_binomial_test(b: int, c: int) -> None:
    assert b + c < EXACT_BELOW
    # The concordant cells do not matter to the test; they are there to make a real table.
    expected = oracle(np.array([[40, b], [c, 35]]), exact=True)
    result = mcnemar(b, c)
    assert result.exact and (result.control_only, result.challenger_only) == (b, c)
    assert result.statistic == expected.statistic
    assert result.pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("b", "c"), [(13, 12), (30, 12), (12, 30), (100, 100), (250, 180), (1, 60), (4_000, 4_210)])
def test_many_take_the_chi_square_with_the_continuity_correction(b: int, c: int) -> None:
    expected = oracle(np.array([[900, b], [c, 800]]), exact=False, correction=True)
    result = mcnemar(b, c)
    assert not result.exact
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert result.pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


def test_a_worked_example() -> None:
    # 30 requests control got right and the challenger wrong, 12 the reverse: (|30 - 12| - 1)² / 42.
    result = mcnemar(30, 12)
    assert result.statistic == pytest.approx(289 / 42, rel=1e-12)
    assert result.pvalue == pytest.approx(0.008712, abs=5e-7)  # P(|Z| > 2.6232)
    assert mcnemar(0, 0).pvalue == 1.0  # no discordant pair: no evidence either way


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        mcnemar(-1, 3)
