"""What an evaluation returns: immutable values, safe to hand to any reader.

Everything is a frozen dataclass of tuples, strings and Python floats, so the
admin handlers and the metrics collector can read one snapshot while the
evaluator builds the next, and it serialises as it is.

Usage::

    snapshot = evaluate(tracker)
    age = snapshot.feature("age")
    age.verdict                           # "drift": real (corrected p) and material (effect), or PSI > 0.2
    age.method("ks").pvalue               # 3.1e-12, raw
    age.method("ks").corrected_pvalue     # 6.2e-11, Holm-corrected across the features
    age.method("wasserstein").score       # 0.31, the effect size
    snapshot.drifted_share                # 0.25
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sidecar.drift.rule import VerdictRule
from sidecar.drift.verdicts import Verdict
from sidecar.reference import Kind

__all__ = ["Method", "MethodResult", "WindowStats", "DriftResult", "DriftSnapshot"]

Method = Literal["psi", "ks", "chi2", "wasserstein", "jensenshannon"]


@dataclass(frozen=True)
class MethodResult:
    """One detector's outcome.

    ``score`` is PSI, the KS D, the chi-square statistic, or the effect size
    (normed Wasserstein, Jensen–Shannon distance). The tests (``ks``,
    ``chi2``) have a raw ``pvalue`` and a ``corrected_pvalue``, Holm's across
    the features (or the outputs) of one evaluation, and their verdict follows
    the corrected one; PSI and the effect sizes have neither.
    """

    method: Method
    score: float | None
    pvalue: float | None
    verdict: Verdict
    corrected_pvalue: float | None = None


@dataclass(frozen=True)
class WindowStats:
    """Summary statistics of the window, weighted by 1/p, laid out as the reference's ``Stats``.

    ``count`` is the raw number of non-null values; mean and std (population,
    ``ddof=0``) and min and max are None for categorical channels and for an
    empty window; ``null_share`` is None when the window saw no records.
    ``cardinality`` is the distinct non-null values: exact when
    ``cardinality_exact``, else 128, meaning at least that many
    (:mod:`sidecar.drift.distinct`).
    """

    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    null_share: float | None
    cardinality: int
    cardinality_exact: bool


@dataclass(frozen=True)
class DriftResult:
    """The drift of one feature, model output or label over the window.

    ``weight`` is the weighted non-null count (the traffic it stands for),
    ``effective_samples`` its Kish effective sample size. ``reference`` and
    ``current`` are the bin shares, in the order of ``labels``, the bins'
    display names (:func:`sidecar.drift.bin_labels`). ``methods`` are PSI,
    the test (KS or chi-square) and the effect size (``wasserstein`` or
    ``jensenshannon``), in that order. ``verdict`` follows the snapshot's
    :class:`VerdictRule`.
    """

    name: str
    kind: Kind
    weight: float
    effective_samples: float
    methods: tuple[MethodResult, ...]
    verdict: Verdict
    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    stats: WindowStats

    def method(self, method: Method) -> MethodResult | None:
        """The result of ``method``, or None if it does not apply to this kind."""
        return next((result for result in self.methods if result.method == method), None)


@dataclass(frozen=True)
class DriftSnapshot:
    """Drift over the window ``[window_start, window_end)`` (Unix seconds), evaluated at ``evaluated_at``.

    Dataset level, over the features only: ``drifted_share`` is the share of
    the features with enough data whose verdict is ``"drift"``, and
    ``verdict`` is ``"drift"`` when it exceeds ``drift_share``,
    ``"insufficient_data"`` when no feature has enough data. ``rule`` is the
    verdict rule every verdict in it followed.
    """

    evaluated_at: float
    window_start: float
    window_end: float
    features: tuple[DriftResult, ...]
    outputs: tuple[DriftResult, ...]
    label: DriftResult | None
    drifted_share: float | None
    drift_share: float
    verdict: Verdict
    rule: VerdictRule

    def feature(self, name: str) -> DriftResult:
        """The result of one feature; KeyError if the profile has no such feature."""
        for result in self.features:
            if result.name == name:
                return result
        raise KeyError(name)
