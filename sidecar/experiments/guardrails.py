"""Guardrails: serving signals the treatment may not worsen by more than the definition allows.

Each guardrail compares the treatment's value with control's, from the
proxy's own counters (every request, not a sample)::

    error_rate       errors / requests per arm                 max_increase 0.01 = one point
    latency_p95_ms   the 95th percentile of latency per arm    max_increase 20   = 20 ms

and is breached when ``treatment − control > max_increase``. The values are
the proxy's counts over the experiment, not estimates from a sample, so the
comparison is direct; a guardrail whose arm has no requests yet (NaN) is not
breached. A breach makes the decision ``revert`` whatever the primary
metrics say, so it waits until both arms have :data:`MIN_REQUESTS`: a p95 of
a few dozen requests is their slowest one or two (one slow request among a
new arm's first 28 made its p95 40 ms against 0.5 ms in the demo), and an
error rate moves a point with one error in a hundred.

Usage::

    check("error_rate", control=0.010, treatment=0.025, max_increase=0.01).breached  # True
    check("error_rate", control=0.010, treatment=0.025, max_increase=0.01, requests=(150, 90)).breached  # False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sidecar.experiments.definition import GuardrailName

__all__ = ["MIN_REQUESTS", "GuardrailCheck", "check"]

# Requests each arm needs before its guardrails can be breached: the p95 is then past the tenth slowest.
MIN_REQUESTS: Final = 200


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


def check(
    name: GuardrailName,
    *,
    control: float,
    treatment: float,
    max_increase: float,
    requests: tuple[int, int] = (MIN_REQUESTS, MIN_REQUESTS),
) -> GuardrailCheck:
    """Compare the treatment's value with control's; NaN on either side is not a breach, nor are fewer than
    :data:`MIN_REQUESTS` ``requests`` in either arm (control's, treatment's)."""
    increase = treatment - control
    enough = min(requests) >= MIN_REQUESTS
    return GuardrailCheck(name, control, treatment, increase, max_increase, enough and increase > max_increase)
