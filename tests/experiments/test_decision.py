"""The decision rule, one case per line of the issue, and the order in which the rules apply."""

from __future__ import annotations

import math

import pytest

from sidecar.experiments.compare import Effect, adjusted, compare_proportions
from sidecar.experiments.decision import DECISIONS, Decision, Primary, decide
from sidecar.experiments.guardrails import GuardrailCheck, check
from sidecar.experiments.lift import Lift
from sidecar.experiments.moments import Moments, Proportion
from sidecar.experiments.power import Power, power_for_proportions
from sidecar.experiments.srm import SampleRatio, srm

FINE = [srm([5_000, 5_010], [0.5, 0.5])]
CALM = [check("error_rate", control=0.01, treatment=0.011, max_increase=0.01)]
UNKNOWN = Power(math.nan, None, None)


def effect(difference: float, ci: tuple[float, float], pvalue_adjusted: float) -> Effect:
    m = Moments(1_000, 0.1, 0.09)
    return Effect(m, m, difference, ci[0], ci[1], pvalue_adjusted, Lift(0, 0, 0, 0), False, pvalue_adjusted)


def primary(difference: float, ci: tuple[float, float], p: float, goal: str = "increase", mde: float = 0.01) -> Primary:
    return Primary("conversion", effect(difference, ci, p), goal, mde, UNKNOWN)  # type: ignore[arg-type]


def test_the_decisions() -> None:
    assert DECISIONS == ("invalid", "revert", "roll_out", "no_difference", "keep_running")


def test_invalid_on_a_sample_ratio_mismatch_before_anything_else() -> None:
    mismatch = srm([51_000, 49_000], [0.5, 0.5])
    result = decide(
        ratios=[FINE[0], mismatch], primary=[primary(0.02, (0.01, 0.03), 0.001)], guardrails=CALM, alpha=0.05
    )
    assert result.decision == "invalid"
    assert result.reason.startswith("sample ratio mismatch (p = 2.54e-10 < 0.001)")


def test_revert_when_the_primary_is_significantly_worse_or_a_guardrail_breached() -> None:
    worse = decide(ratios=FINE, primary=[primary(-0.02, (-0.03, -0.01), 0.001)], guardrails=CALM, alpha=0.05)
    assert worse == Decision("revert", "conversion is significantly worse (adjusted p = 0.001)")
    # Worse by its goal: a loss that rose.
    loss = decide(
        ratios=FINE, primary=[primary(0.02, (0.01, 0.03), 0.001, goal="decrease")], guardrails=CALM, alpha=0.05
    )
    assert loss.decision == "revert"
    # A breached guardrail reverts even a winner.
    slow = [check("latency_p95_ms", control=40.0, treatment=75.0, max_increase=20)]
    breached = decide(ratios=FINE, primary=[primary(0.02, (0.01, 0.03), 0.001)], guardrails=slow, alpha=0.05)
    assert breached == Decision("revert", "latency_p95_ms rose by 35, more than the 20 allowed")


def test_roll_out_when_the_primary_is_significantly_better_after_correction() -> None:
    better = decide(ratios=FINE, primary=[primary(0.02, (0.01, 0.03), 0.003)], guardrails=CALM, alpha=0.05)
    assert better == Decision(
        "roll_out", "conversion is significantly better (adjusted p = 0.003), and no guardrail is breached"
    )
    lower_loss = decide(
        ratios=FINE, primary=[primary(-0.02, (-0.03, -0.01), 0.003, goal="decrease")], guardrails=CALM, alpha=0.05
    )
    assert lower_loss.decision == "roll_out"
    # Significant before the correction but not after: not yet.
    raw_only = decide(ratios=FINE, primary=[primary(0.02, (0.001, 0.04), 0.08)], guardrails=CALM, alpha=0.05)
    assert raw_only.decision == "keep_running"


def test_no_difference_when_the_interval_excludes_effects_of_size_mde() -> None:
    narrow = decide(ratios=FINE, primary=[primary(0.001, (-0.004, 0.006), 0.7)], guardrails=CALM, alpha=0.05)
    assert narrow.decision == "no_difference"
    # An interval that reaches the mde on either side is not conclusive.
    for ci in ((-0.01, 0.005), (-0.005, 0.01), (-0.02, 0.02)):
        assert decide(ratios=FINE, primary=[primary(0.0, ci, 0.9)], guardrails=CALM, alpha=0.05).decision == (
            "keep_running"
        )


def test_keep_running_says_how_many_units_per_arm_are_still_needed() -> None:
    control, treatment = Proportion(5_000, 500), Proportion(5_000, 520)
    [conversion] = adjusted([compare_proportions(control, treatment, alpha=0.05)], "holm")
    power = power_for_proportions(control, treatment, mde=0.01, alpha=0.05, power=0.8, ratio=1.0)
    result = decide(
        ratios=FINE, primary=[Primary("conversion", conversion, "increase", 0.01, power)], guardrails=CALM, alpha=0.05
    )
    assert result == Decision("keep_running", "no primary metric is conclusive yet", (9_745, 9_745))
    # Several primaries: the one furthest from its n; none known: None.
    nearer = Primary("other", conversion, "increase", 0.01, Power(0.01, (6_000, 6_000), (1_000, 1_000)))
    both = decide(
        ratios=FINE,
        primary=[nearer, Primary("conversion", conversion, "increase", 0.01, power)],
        guardrails=CALM,
        alpha=0.05,
    )
    assert both.remaining == (9_745, 9_745)
    assert decide(ratios=FINE, primary=[], guardrails=[], alpha=0.05) == Decision(
        "keep_running", "no primary metric is conclusive yet", None
    )


def test_an_untested_metric_decides_nothing() -> None:
    nan = primary(math.nan, (math.nan, math.nan), math.nan)
    assert decide(ratios=FINE, primary=[nan], guardrails=[], alpha=0.05).decision == "keep_running"
    no_ratio = SampleRatio(math.nan, math.nan, False)
    assert decide(ratios=[no_ratio], primary=[nan], guardrails=[], alpha=0.05).decision == "keep_running"


@pytest.mark.parametrize("guardrail", [GuardrailCheck("error_rate", 0.01, math.nan, math.nan, 0.01, False)])
def test_a_guardrail_without_data_does_not_revert(guardrail: GuardrailCheck) -> None:
    better = decide(ratios=FINE, primary=[primary(0.02, (0.01, 0.03), 0.003)], guardrails=[guardrail], alpha=0.05)
    assert better.decision == "roll_out"
