"""Simpson's check: a constructed paradox is flagged; consistent segments, and pure noise, are not."""

from __future__ import annotations

import numpy as np
import pytest

from sidecar.experiments.moments import Moments, Proportion
from sidecar.experiments.simpson import Segment, simpson
from sidecar.experiments.welch import welch


def test_a_constructed_paradox_is_flagged() -> None:
    # The treatment is worse in both countries, but a skewed ramp-up gave it mostly Germany, which converts more:
    # DE: control 2,000 at 35 %, treatment 8,000 at 33 %; FR: control 8,000 at 12.5 %, treatment 2,000 at 10 %.
    segments = {
        "de": (Proportion(2_000, 700).moments(), Proportion(8_000, 2_640).moments()),
        "fr": (Proportion(8_000, 1_000).moments(), Proportion(2_000, 200).moments()),
    }
    result = simpson(segments, alpha=0.05)
    # Pooled: control 1,700 of 10,000, treatment 2,840 of 10,000: "better" by 11 points, very significantly.
    assert result.pooled == pytest.approx(0.284 - 0.17)
    assert result.segments == (
        Segment("de", pytest.approx(-0.02), 10_000),  # type: ignore[arg-type]
        Segment("fr", pytest.approx(-0.025), 10_000),  # type: ignore[arg-type]
    )
    assert result.majority == -1 and result.pvalue < 0.05
    assert result.flagged
    # The same mix with the treatment better in both countries: pooled and segments agree.
    agreeing = {
        "de": (Proportion(2_000, 600).moments(), Proportion(8_000, 2_560).moments()),  # 30 % → 32 %
        "fr": (Proportion(8_000, 800).moments(), Proportion(2_000, 240).moments()),  # 10 % → 12 %
    }
    result = simpson(agreeing, alpha=0.05)
    assert result.majority == 1 and result.pooled == pytest.approx(0.14)
    assert not result.flagged


def test_the_pooled_effect_is_welchs_over_the_merged_arms() -> None:
    rng = np.random.default_rng(6)
    parts = {s: (rng.normal(1.0, 1.0, 300), rng.normal(1.1, 1.0, 250)) for s in ("a", "b", "c")}
    result = simpson({s: (Moments.of_values(c), Moments.of_values(t)) for s, (c, t) in parts.items()}, alpha=0.05)
    control = Moments.of_values(np.concatenate([c for c, _ in parts.values()]))
    treatment = Moments.of_values(np.concatenate([t for _, t in parts.values()]))
    expected = welch(control, treatment, alpha=0.05)
    assert (result.pooled, result.pvalue) == pytest.approx((expected.difference, expected.pvalue), rel=1e-9)


def test_consistent_segments_and_noise_are_not_flagged() -> None:
    # The same +2 points everywhere, with the same mix in both arms.
    consistent = {
        name: (Proportion(n, n * rate).moments(), Proportion(n, n * (rate + 0.02)).moments())
        for name, n, rate in (("de", 5_000, 0.3), ("fr", 3_000, 0.1), ("us", 9_000, 0.2))
    }
    result = simpson(consistent, alpha=0.05)
    assert result.majority == 1 and result.pooled > 0 and not result.flagged
    # No effect anywhere: 1,000 seeded A/A runs over five segments are flagged rarely, if ever.
    rng = np.random.default_rng(31)
    flagged = 0
    for _ in range(1_000):
        converted = rng.binomial(2_000, [[0.1, 0.2, 0.3, 0.05, 0.15]] * 2).tolist()
        segments = {
            str(s): (Proportion(2_000, converted[0][s]).moments(), Proportion(2_000, converted[1][s]).moments())
            for s in range(5)
        }
        flagged += simpson(segments, alpha=0.05).flagged
    assert flagged / 1_000 <= 0.02


def test_an_empty_segment_has_no_vote() -> None:
    segments = {
        "a": (Moments(100, 1.0, 1.0), Moments(100, 1.5, 1.0)),
        "b": (Moments(0, float("nan"), float("nan")), Moments(5, 3.0, 1.0)),
    }
    result = simpson(segments, alpha=0.05)
    assert result.majority == 1 and not result.flagged
