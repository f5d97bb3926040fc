"""Guardrails: serving signals the treatment may not worsen by more than the definition allows.

Each guardrail compares the treatment's value with control's, from the
proxy's own counters (every request, not a sample)::

    error_rate       errors / requests per arm                 max_increase 0.01 = one point
    latency_p95_ms   the 95th percentile of latency per arm    max_increase 20   = 20 ms

and is breached when ``treatment − control > max_increase``. The values are
the proxy's counts over the experiment, not estimates from a sample, so the
comparison is direct; a guardrail whose arm has no requests yet (NaN) is not
breached. A breach makes the decision ``revert`` whatever the primary
metrics say.

Usage::

    check("error_rate", control=0.010, treatment=0.025, max_increase=0.01).breached  # True
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.experiments.definition import GuardrailName

__all__ = ["GuardrailCheck", "check"]


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    """One guardrail: both arms' values, the increase, the allowance, and whether it is breached.

    Usage::

        GuardrailCheck("latency_p95_ms", 41.0, 70.0, 29.0, 20.0, breached=True)
    """

    name: GuardrailName
    control: float
    treatment: float
    increase: float
    max_increase: float
    breached: bool


def check(name: GuardrailName, *, control: float, treatment: float, max_increase: float) -> GuardrailCheck:
    """Compare the treatment's value with control's; NaN on either side is not a breach."""
    increase = treatment - control
    return GuardrailCheck(name, control, treatment, increase, max_increase, increase > max_increase)
