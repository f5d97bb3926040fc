"""Always-valid p-values and confidence sequences, so that looking early and often is safe.

A fixed-horizon p-value is valid once, at a sample size chosen in advance.
Looked at after every batch, and stopped at the first p < α, an experiment
without any effect is called significant far more often than α (about 25 %
after 20 looks). A confidence sequence is a sequence of intervals that holds
the true effect at *every* sample size at once with probability 1 − α, so
the dashboard may be read every minute and the experiment stopped whenever.

We use the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha,
Kennedy & Ramdas ("Time-uniform central limit theory and asymptotic
confidence sequences", Annals of Statistics 2024, arXiv:2103.06476), as
GrowthBook's frequentist engine does (docs.growthbook.io, "Sequential
Testing"). For an estimate ``Δ̂`` with standard error ``se`` from ``N``
units in all (both arms together)::

    CS = Δ̂ ± se · r(N),   r(N) = sqrt( 2(Nρ² + 1)/(Nρ²) · ln( sqrt(Nρ² + 1) / α ) )

The normal-mixture boundary with mixing variance ρ² (Robbins 1970) applied to
the standardised sum of the estimate's influence values, whose variance
``N·se²`` is estimated as it goes. Its always-valid p-value is the α at
which the sequence first excludes 0, from the mixture's e-value::

    p(N) = min(1, sqrt(Nρ² + 1) · exp(−ρ²·N·z² / (2(Nρ² + 1)))),   z = Δ̂ / se

so ``p(N) ≤ α`` exactly when 0 is outside the sequence. Reject when any look
gives ``p ≤ α``: the false-positive rate over all looks stays at most α
(asymptotically; tests/experiments/test_simulations.py checks it).

The tuning parameter is the sample size ``N*`` the sequence is made
tightest for: ρ minimises its width at ``N = N*`` (the paper's optimal ρ)::

    ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*

:data:`TUNING` = 5,000 units, GrowthBook's default. The price is width: at
N* and α = 0.05 the sequence is 1.55 times as wide as the fixed interval
(radius 3.04 standard errors against 1.96), and it narrows like
sqrt(ln N / N) rather than 1/sqrt(N). The
multiplicity correction applies to these p-values as to fixed ones: an
always-valid p-value read at any stopping time is a valid p-value.

Usage::

    r = radius(n=20_000, alpha=0.05)                      # 3.13, against 1.96 for a fixed interval
    pvalue(estimate=0.012, standard_error=0.005, n=20_000, alpha=0.05)
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["TUNING", "mixing_variance", "pvalue", "radius"]

TUNING: Final = 5000.0


def mixing_variance(alpha: float, tuning: float = TUNING) -> float:
    """ρ², chosen so the sequence is narrowest at ``tuning`` units."""
    log_alpha = -2.0 * math.log(alpha)
    return (log_alpha + math.log(log_alpha + 1.0)) / tuning


def radius(n: float, alpha: float, tuning: float = TUNING) -> float:
    """The sequence's half-width in standard errors at ``n`` units in all: the fixed interval's z, for looking often."""
    if not n > 0:
        return math.nan
    n_rho2 = n * mixing_variance(alpha, tuning)
    return math.sqrt(2.0 * (n_rho2 + 1.0) / n_rho2 * math.log(math.sqrt(n_rho2 + 1.0) / alpha))


def pvalue(estimate: float, standard_error: float, n: float, alpha: float, tuning: float = TUNING) -> float:
    """The always-valid p-value of ``estimate`` at ``n`` units in all; NaN when the standard error is not positive."""
    if not standard_error > 0 or not n > 0:
        return math.nan
    n_rho2 = n * mixing_variance(alpha, tuning)
    z = estimate / standard_error
    # In logs: exp(...) overflows for a large effect long before the p-value stops being meaningful.
    log_p = 0.5 * math.log(n_rho2 + 1.0) - n_rho2 * z * z / (2.0 * (n_rho2 + 1.0))
    return math.exp(min(0.0, log_p))
