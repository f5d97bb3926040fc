"""Guardrails: breached when the treatment's value exceeds control's by more than allowed, and only then."""

from __future__ import annotations

import math

import pytest

from sidecar.experiments.guardrails import MIN_REQUESTS, GuardrailCheck, check


def test_breached_beyond_the_allowed_increase() -> None:
    result = check("error_rate", control=0.010, treatment=0.025, max_increase=0.01)
    assert result == GuardrailCheck("error_rate", 0.010, 0.025, result.increase, 0.01, True)
    assert result.increase == pytest.approx(0.015, rel=1e-12)
    assert not check("error_rate", control=0.010, treatment=0.019, max_increase=0.01).breached
    assert check("latency_p95_ms", control=41.0, treatment=70.0, max_increase=20).breached
    assert not check("latency_p95_ms", control=41.0, treatment=61.0, max_increase=20).breached  # exactly 20: allowed
    assert not check("latency_p95_ms", control=41.0, treatment=30.0, max_increase=0).breached  # faster is fine


def test_too_few_requests_in_either_arm_is_no_breach_yet() -> None:
    slow = {"control": 0.5, "treatment": 40.0, "max_increase": 25.0}
    assert not check("latency_p95_ms", **slow, requests=(MIN_REQUESTS, MIN_REQUESTS - 1)).breached
    assert not check("latency_p95_ms", **slow, requests=(MIN_REQUESTS - 1, 10_000)).breached
    result = check("latency_p95_ms", **slow, requests=(MIN_REQUESTS, MIN_REQUESTS))
    assert result.breached and result.increase == 39.5


def test_no_data_is_no_breach() -> None:
    result = check("error_rate", control=math.nan, treatment=0.5, max_increase=0.01)
    assert math.isnan(result.increase) and not result.breached
