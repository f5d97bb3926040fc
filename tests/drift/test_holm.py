"""Holm's correction: a worked example, and the step-down rule it stands for."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidecar.drift import holm


def test_the_textbook_example() -> None:
    # Four tests at alpha 0.05: sorted 0.005, 0.01, 0.03, 0.04 against 0.05/4, 0.05/3, 0.05/2, 0.05/1;
    # the third fails, so only the first two (0.005 and 0.01) are rejected.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx((0.03, 0.06, 0.06, 0.02), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_equals_the_closed_form_and_rejects_what_the_step_down_rejects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # A mix of tiny and ordinary p-values, with ties, as features give.
    raw = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 15), [0.02, 0.02]])
    rng.shuffle(raw)
    adjusted = np.array(holm(raw.tolist()))
    # Independently: the sorted p-values times m − j + 1, capped at 1, made monotone by a running maximum.
    order = np.argsort(raw, kind="stable")
    m = len(raw)
    closed = np.empty(m)
    closed[order] = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * raw[order]))
    assert adjusted == pytest.approx(closed, rel=1e-12)
    # Holm's own procedure: reject the smallest while p_(i) < alpha / (m − i), and stop at the first that fails.
    for alpha in (0.01, 0.05, 0.1):
        rejected = set()
        for i, j in enumerate(order):
            if raw[j] >= alpha / (m - i):
                break
            rejected.add(int(j))
        assert {int(j) for j in np.flatnonzero(adjusted < alpha)} == rejected


def test_edge_cases() -> None:
    assert holm([]) == ()
    assert holm([0.03]) == (0.03,)  # one test: nothing to correct
    assert holm([0.5, 0.6]) == (1.0, 1.0)  # capped at 1
    # A test that could not be computed is no evidence, and does not disturb the others.
    assert holm([math.nan, 0.001]) == pytest.approx((1.0, 0.002))
