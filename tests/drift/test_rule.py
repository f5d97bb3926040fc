"""The verdict rule: real and material, or PSI > 0.2; moderate in between; PSI alone on request."""

from __future__ import annotations

import typing

import pytest

from sidecar.config import Settings
from sidecar.drift import RULES, VerdictRule

COMBINED = VerdictRule()


@pytest.mark.parametrize(
    ("psi", "corrected", "size", "verdict"),
    [
        (0.09, 1e-30, 0.30, "drift"),  # the 0.3σ shift PSI called moderate at best: real and material
        (0.09, 0.20, 0.30, "no_drift"),  # material but not real (a small window): not even moderate
        (0.25, 0.20, 0.02, "drift"),  # PSI > 0.2 suffices, as the playbook says
        (0.003, 1e-6, 0.08, "moderate"),  # real, above half the threshold, not material
        (0.12, 1e-6, 0.02, "moderate"),  # real, PSI above 0.1
        (0.003, 1e-6, 0.05, "no_drift"),  # real, but exactly half the threshold is not above it
        (0.003, 0.049, 0.10, "drift"),  # at the thresholds: material at 0.1, real below 0.05
        (0.003, 0.05, 0.10, "no_drift"),  # p of exactly alpha is not real
        (0.15, 0.5, 0.5, "no_drift"),  # PSI 0.15 and a large effect, but not real (PSI alone would say moderate)
    ],
)
def test_the_combined_rule(psi: float, corrected: float, size: float, verdict: str) -> None:
    assert COMBINED.verdict(psi=psi, corrected_pvalue=corrected, effect="wasserstein", size=size) == verdict


def test_each_effect_has_its_own_threshold_and_the_psi_rule_ignores_both() -> None:
    rule = VerdictRule(wasserstein=0.2, jensenshannon=0.05, alpha=0.01)
    assert rule.verdict(psi=0.0, corrected_pvalue=0.001, effect="jensenshannon", size=0.06) == "drift"
    assert rule.verdict(psi=0.0, corrected_pvalue=0.001, effect="wasserstein", size=0.15) == "moderate"
    assert rule.verdict(psi=0.0, corrected_pvalue=0.02, effect="wasserstein", size=0.5) == "no_drift"
    assert (rule.significant(0.009), rule.significant(0.01)) == ("drift", "no_drift")
    assert (rule.material("wasserstein", 0.2), rule.material("jensenshannon", 0.049)) == ("drift", "no_drift")
    psi = VerdictRule("psi")
    assert [psi.verdict(psi=p, corrected_pvalue=0.0, effect="wasserstein", size=9.0) for p in (0.09, 0.15, 0.21)] == [
        "no_drift",
        "moderate",
        "drift",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "evidently"}, "must be one of combined, psi"),
        ({"alpha": 0.0}, "alpha must be between 0 and 1"),
        ({"alpha": 1.0}, "alpha must be between 0 and 1"),
        ({"wasserstein": 0.0}, "the wasserstein threshold must be a positive number"),
        ({"jensenshannon": float("nan")}, "the jensenshannon threshold must be a positive number"),
    ],
)
def test_a_rule_that_makes_no_sense_is_refused(kwargs: dict[str, typing.Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VerdictRule(**kwargs)


def test_the_setting_offers_exactly_the_rules() -> None:
    # SIDECAR_DRIFT_VERDICT spells its choices in sidecar/config.py, which must not import numpy.
    hints = typing.get_type_hints(Settings)
    assert typing.get_args(hints["drift_verdict"]) == RULES
    defaults = Settings.from_env({"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:8080"})
    assert (
        defaults.drift_verdict,
        defaults.drift_alpha,
        defaults.drift_wasserstein_threshold,
        defaults.drift_jensenshannon_threshold,
    ) == (COMBINED.name, COMBINED.alpha, COMBINED.wasserstein, COMBINED.jensenshannon)
