"""Seeded A/A simulations: the tests make as many false positives as α says, and peeking needs the sequential one.

Every experiment here has no effect at all, so every rejection is a false
positive. The data are drawn at once with numpy; only the tests' own
functions run per experiment.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.compare import compare_means, compare_proportions
from sidecar.experiments.moments import Moments, Proportion
from sidecar.experiments.sequential import pvalue as always_valid_pvalue

EXPERIMENTS = 2_000
ALPHA = 0.05


def test_welch_on_aa_experiments_rejects_five_percent() -> None:
    rng = np.random.default_rng(17)
    # Skewed values (revenue-like), 500 units per arm.
    control = rng.lognormal(1.0, 0.8, size=(EXPERIMENTS, 500))
    treatment = rng.lognormal(1.0, 0.8, size=(EXPERIMENTS, 500))
    sums = [(a.sum(), (a * a).sum(), b.sum(), (b * b).sum()) for a, b in zip(control, treatment, strict=True)]
    rejected = sum(
        compare_means(Moments.of_sums(500, sa, qa), Moments.of_sums(500, sb, qb), alpha=ALPHA).pvalue < ALPHA
        for sa, qa, sb, qb in sums
    )
    assert rejected / EXPERIMENTS == pytest.approx(ALPHA, abs=0.015)


def test_the_proportion_test_on_aa_experiments_rejects_five_percent() -> None:
    rng = np.random.default_rng(18)
    conversions = rng.binomial(5_000, 0.1, size=(EXPERIMENTS, 2))
    rejected = sum(
        compare_proportions(Proportion(5_000, int(c)), Proportion(5_000, int(t)), alpha=ALPHA).pvalue < ALPHA
        for c, t in conversions
    )
    assert rejected / EXPERIMENTS == pytest.approx(ALPHA, abs=0.015)


def test_peeking_after_every_batch_inflates_fixed_p_values_but_not_the_sequential_ones() -> None:
    # 2,000 A/A experiments looked at after each of 20 batches of 250 units per arm (5,000 at the end),
    # stopping at the first look with p < α. Values: 0/1 conversions at 10 %.
    rng = np.random.default_rng(19)
    looks, batch = 20, 250
    per_batch = rng.binomial(batch, 0.1, size=(2, EXPERIMENTS, looks))
    successes = per_batch.cumsum(axis=2).astype(float)  # control, treatment: conversions so far at each look
    n = batch * np.arange(1, looks + 1, dtype=float)  # units per arm at each look
    rate = successes / n
    difference = rate[1] - rate[0]
    standard_error = np.sqrt((rate[0] * (1 - rate[0]) + rate[1] * (1 - rate[1])) / n)

    # Fixed-horizon: the two-proportion z test's p-value at each look, as if it were the only one.
    pooled = (successes[0] + successes[1]) / (2 * n)
    z = difference / np.sqrt(pooled * (1 - pooled) * 2 / n)
    naive = 2 * stats.norm.sf(np.abs(z))
    naive_rate = float((naive < ALPHA).any(axis=1).mean())
    # The same test's last look alone is fine: peeking is the problem, not the test.
    final_rate = float((naive[:, -1] < ALPHA).mean())

    sequential = np.array(
        [
            [always_valid_pvalue(d, s, 2 * n[k], ALPHA) for k, (d, s) in enumerate(zip(ds, ss, strict=True))]
            for ds, ss in zip(difference, standard_error, strict=True)
        ]
    )
    sequential_rate = float((sequential <= ALPHA).any(axis=1).mean())

    assert final_rate == pytest.approx(ALPHA, abs=0.015)
    assert naive_rate > 0.1  # about 0.2: four times what α promises
    assert sequential_rate <= ALPHA
