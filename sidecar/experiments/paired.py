"""The paired t test: the mean of per-request differences between two models judged on the same requests.

With ``dᵢ`` the challenger's value minus control's on request i (a loss, a
squared error, a 0/1 correctness), ``n`` requests, their mean ``d̄`` and
sample variance ``s²`` (ddof 1)::

    se = s / √n,   t = d̄ / se,   ν = n − 1,   p = 2 · P(T_ν > |t|),   CI = d̄ ± t_{ν, 1−α/2} · se

Pairing removes the requests' own variation (a hard request is hard for
both models), which is why it is far more sensitive than comparing two
independent samples. It is ``scipy.stats.ttest_rel(challenger, control)``
and its ``confidence_interval(1 − α)``, from the differences' summary
(:class:`~sidecar.experiments.moments.Moments`).

Usage::

    paired_t(Moments.of_values(challenger_loss - control_loss), alpha=0.05).pvalue
"""

from __future__ import annotations

import math

from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.comparison import Comparison
from sidecar.experiments.moments import Moments

__all__ = ["paired_t"]


def paired_t(differences: Moments, *, alpha: float) -> Comparison:
    """The paired t test of the mean difference; NaN throughout but the mean with fewer than two requests or
    differences that never vary."""
    n, mean = differences.n, differences.mean
    se = math.sqrt(differences.variance / n) if n >= 2 else math.nan
    if not se > 0:
        return Comparison(mean, se, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    df = float(n - 1)
    t = mean / se
    critical = float(stats.t.isf(alpha / 2, df))
    half = critical * se
    return Comparison(mean, se, t, df, float(2 * stats.t.sf(abs(t), df)), mean - half, mean + half, critical)
