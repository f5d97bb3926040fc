"""Power: the effect detectable at the current n (the MDE), and the n per arm needed for the wanted one.

The two-sided z test of a standardised effect ``d`` with ``n_c`` control and
``n_t = r·n_c`` treatment units has power::

    power(d) = Φ(d·sqrt(ñ) − z_{1−α/2}) + Φ(−d·sqrt(ñ) − z_{1−α/2}),   ñ = 1 / (1/n_c + 1/n_t)

(the second term is the far tail, tiny but kept). We solve ``power(d) =
power`` for ``x = d·sqrt(ñ)`` once, by Brent's method to machine precision,
and read off either ``d`` at the current n or ``n_c = x²·(1 + 1/r)/d²`` for a
given d. This is ``statsmodels.stats.power.NormalIndPower().solve_power``
(``nobs1`` = control units, ``ratio`` = n_t/n_c), which solves the same
equation. The conventions for the standardised effect:

- a mean: Cohen's ``d = Δ / s``, with ``s`` the pooled standard deviation
  ``sqrt(((n_c − 1)s²_c + (n_t − 1)s²_t) / (n_c + n_t − 2))``;
- a proportion: Cohen's ``h = 2·asin(sqrt(p_c + Δ)) − 2·asin(sqrt(p_c))``
  around the control rate (the arcsine makes the variance independent of
  p). 10 % → 11 % at α = 0.05 and power 0.8 needs 14,744 units per arm.
  The MDE is the increase over ``p_c`` with that h; where ``p_c + Δ``
  would pass 1, the decrease.

``mde`` is absolute, in the metric's unit. The n is for a fixed-horizon
test: a confidence sequence needs more for the same power, and a corrected
family less per test's α; pass ``alpha / m`` to plan for Bonferroni over m
metrics.

Usage::

    sample_size(cohens_h(0.10, 0.11), alpha=0.05, power=0.8)              # 14744.1 control units
    power_for_proportions(control, treatment, mde=0.01, alpha=0.05, power=0.8, ratio=1.0).remaining
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from scipy import optimize, stats  # type: ignore[import-untyped]

from sidecar.experiments.moments import Moments, Proportion

__all__ = [
    "Power",
    "cohens_h",
    "detectable_effect",
    "power_for_means",
    "power_for_proportions",
    "sample_size",
]


@dataclass(frozen=True, slots=True)
class Power:
    """What the data can tell: ``mde`` detectable now, and the units per arm ``required`` for the wanted mde.

    ``mde`` is absolute, in the metric's unit; ``required`` and ``remaining``
    are (control, treatment) unit counts, None when the variance or rate is
    not known yet.

    Usage::

        power.mde        # 0.013: an effect this large would be found 80 % of the time, at today's n
        power.remaining  # (4210, 4210): units per arm still to come
    """

    mde: float
    required: tuple[int, int] | None
    remaining: tuple[int, int] | None


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h from ``p1`` to ``p2``: ``2·asin(sqrt(p2)) − 2·asin(sqrt(p1))``."""
    return 2.0 * math.asin(math.sqrt(p2)) - 2.0 * math.asin(math.sqrt(p1))


def sample_size(effect_size: float, *, alpha: float, power: float, ratio: float = 1.0) -> float:
    """Control units needed to detect the standardised ``effect_size`` (treatment units: ``ratio`` times as many)."""
    if effect_size == 0 or math.isnan(effect_size):
        return math.inf if effect_size == 0 else math.nan
    return _noncentrality(alpha, power) ** 2 * (1.0 + 1.0 / ratio) / effect_size**2


def detectable_effect(n_control: float, *, alpha: float, power: float, ratio: float = 1.0) -> float:
    """The standardised effect detected with ``power`` by ``n_control`` and ``ratio · n_control`` units."""
    if not n_control > 0 or not ratio > 0:
        return math.nan
    return _noncentrality(alpha, power) / math.sqrt(n_control * ratio / (1.0 + ratio))


def power_for_means(
    control: Moments, treatment: Moments, *, mde: float, alpha: float, power: float, ratio: float
) -> Power:
    """The MDE and the n for a mean; ``ratio`` is the planned treatment:control units (weight over weight)."""
    if control.n < 2 or treatment.n < 2:
        return Power(math.nan, None, None)
    pooled = (control.n - 1) * control.variance + (treatment.n - 1) * treatment.variance
    sd = math.sqrt(pooled / (control.n + treatment.n - 2))
    if not sd > 0:
        return Power(math.nan, None, None)
    now = detectable_effect(control.n, alpha=alpha, power=power, ratio=treatment.n / control.n) * sd
    return _power(now, sample_size(mde / sd, alpha=alpha, power=power, ratio=ratio), control, treatment, ratio)


def power_for_proportions(
    control: Proportion, treatment: Proportion, *, mde: float, alpha: float, power: float, ratio: float
) -> Power:
    """The MDE and the n for a proportion, by Cohen's h around the control rate; see the module docstring."""
    p = control.rate
    if control.n < 1 or treatment.n < 1 or math.isnan(p):
        return Power(math.nan, None, None)
    h = detectable_effect(control.n, alpha=alpha, power=power, ratio=treatment.n / control.n)
    # The rate whose h from p is the detectable one: up, unless that passes 1.
    angle = math.asin(math.sqrt(p))
    if angle + h / 2 <= math.pi / 2:
        now = math.sin(angle + h / 2) ** 2 - p
    elif angle - h / 2 >= 0:
        now = p - math.sin(angle - h / 2) ** 2
    else:
        now = math.nan
    target = p + mde if p + mde <= 1.0 else p - mde
    needed = sample_size(abs(cohens_h(p, target)), alpha=alpha, power=power, ratio=ratio) if target >= 0 else math.nan
    return _power(now, needed, control.moments(), treatment.moments(), ratio)


def _power(mde_now: float, needed: float, control: Moments, treatment: Moments, ratio: float) -> Power:
    if not math.isfinite(needed):
        return Power(mde_now, None, None)
    required = (math.ceil(needed), math.ceil(needed * ratio))
    remaining = (max(0, required[0] - control.n), max(0, required[1] - treatment.n))
    return Power(mde_now, required, remaining)


def _noncentrality(alpha: float, power: float) -> float:
    """The x = d·sqrt(ñ) at which the two-sided test at ``alpha`` has ``power``."""
    crit = float(stats.norm.isf(alpha / 2))

    def shortfall(x: float) -> float:
        return float(stats.norm.sf(crit - x) + stats.norm.cdf(-crit - x)) - power

    if shortfall(0.0) >= 0:
        return 0.0  # power ≤ α: any effect, even none, is "detected" that often
    # Without the far tail x = crit + z_power, and the tail only helps: that brackets the root.
    high = crit + float(stats.norm.isf(1.0 - power))
    return float(optimize.brentq(shortfall, 0.0, max(high, 1e-12), xtol=1e-15, rtol=4 * sys.float_info.epsilon))
