"""McNemar's test: do two models, judged on the same requests, get them right as often as each other?

Only the discordant pairs tell the models apart. With ``b`` the requests
control got right and the challenger wrong, and ``c`` the reverse, under the
null hypothesis each discordant pair goes either way with probability 1/2:

- **exact**, when ``b + c <`` :data:`EXACT_BELOW`: the two-sided binomial
  test, ``p = min(1, 2 · P(X ≤ min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``;
  the statistic is ``min(b, c)``;
- otherwise the chi-square with the continuity correction,
  ``χ² = (|b − c| − 1)² / (b + c)`` on one degree of freedom.

No discordant pair at all is no evidence either way: ``p = 1``. These are
``statsmodels.stats.contingency_tables.mcnemar([[·, b], [c, ·]],
exact=True)`` and ``(exact=False, correction=True)`` (McNemar, "Note on the
sampling error of the difference between correlated proportions or
percentages", Psychometrika 1947; the exact test below 25 discordant pairs
is the usual advice, e.g. Fagerland, Lydersen & Laake, BMC Medical Research
Methodology 2013).

Usage::

    mcnemar(control_only=30, challenger_only=12)   # McNemar(30, 12, statistic=6.88..., pvalue=0.0087..., exact=False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from scipy import stats  # type: ignore[import-untyped]

__all__ = ["EXACT_BELOW", "McNemar", "mcnemar"]

# Below this many discordant pairs the chi-square's approximation is poor: the binomial is exact.
EXACT_BELOW: Final = 25


@dataclass(frozen=True, slots=True)
class McNemar:
    """The discordant pairs and the test of them; see the module docstring.

    Usage::

        result = mcnemar(30, 12)
        result.pvalue < 0.05, result.exact
    """

    control_only: int  # b: control right, the challenger wrong
    challenger_only: int  # c: the challenger right, control wrong
    statistic: float
    pvalue: float
    exact: bool


def mcnemar(control_only: int, challenger_only: int) -> McNemar:
    """Test ``b`` = ``control_only`` against ``c`` = ``challenger_only``; see the module docstring."""
    if control_only < 0 or challenger_only < 0:
        raise ValueError(f"discordant counts must be non-negative, not {control_only} and {challenger_only}")
    b, c = control_only, challenger_only
    discordant = b + c
    if discordant < EXACT_BELOW:
        smaller = min(b, c)
        pvalue = min(1.0, 2.0 * float(stats.binom.cdf(smaller, discordant, 0.5)))
        return McNemar(b, c, float(smaller), pvalue, True)
    statistic = (abs(b - c) - 1) ** 2 / discordant
    return McNemar(b, c, statistic, float(stats.chi2.sf(statistic, 1)), False)
