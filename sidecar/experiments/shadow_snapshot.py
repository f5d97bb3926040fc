"""One comparison of a shadow experiment's two models, immutable: what the API's ``shadow`` section and the
``mlsidecar_shadow_*`` metrics show.

:func:`~.shadow_analysis.analyse_shadow` makes a :class:`ShadowSnapshot` per
evaluation, and :mod:`.shadow_view` renders it. It holds the statistics
modules' own results (:class:`~.agreement.Agreement`,
:class:`~.differences.Differences`, :class:`~.shift.Shift`,
:class:`~.mcnemar.McNemar`, :class:`~.comparison.Comparison`'s figures,
:class:`~.guardrails.GuardrailCheck`), each tagged with what it is about.

Usage::

    snapshot = analyse_shadow(experiment, pairs, control=..., challenger=..., answers=..., config=config, ...)
    snapshot.agreement.rate, snapshot.shift.psi, snapshot.metric("accuracy").pvalue_adjusted
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

from sidecar.experiments.agreement import Agreement
from sidecar.experiments.data import Serving
from sidecar.experiments.definition import Correction, Goal, Kind
from sidecar.experiments.differences import Differences
from sidecar.experiments.guardrails import GuardrailCheck
from sidecar.experiments.mcnemar import McNemar
from sidecar.experiments.pairing import Fate
from sidecar.experiments.shift import Shift
from sidecar.experiments.snapshot import Role

__all__ = [
    "PAIRED_METHODS",
    "VERDICTS",
    "Compared",
    "PairedMethod",
    "PairedMetric",
    "Pairing",
    "ShadowArm",
    "ShadowSnapshot",
    "Verdict",
]

# How a label metric's two models were compared on the same requests.
PairedMethod = Literal["mcnemar", "paired_t"]
PAIRED_METHODS: Final[tuple[PairedMethod, ...]] = get_args(PairedMethod)
# What a paired metric says: the challenger significantly better or worse (after the correction, by the
# metric's goal), neither, too few labelled pairs (below SIDECAR_PERF_MIN_LABELS), or no paired test for it.
Verdict = Literal["challenger_better", "challenger_worse", "not_significant", "insufficient_labels", "not_paired"]
VERDICTS: Final[tuple[Verdict, ...]] = get_args(Verdict)
# The per-row numbers whose differences are summarised: a classifier's confidences, else the predictions.
Compared = Literal["confidence", "prediction"]


@dataclass(frozen=True, slots=True)
class Pairing:
    """How much of control's captured traffic has the challenger's answer beside it.

    ``control_rows`` are control's predictions stored in the window, ``paired``
    those with the challenger's prediction, ``labelled`` the pairs with a
    label (all three the store's: the fleet's with PostgreSQL); ``rate`` is
    ``paired / control_rows``. ``answers`` counts this process's challenger
    answers by fate (:data:`~.pairing.FATES`).

    Usage::

        Pairing(control_rows=1_000, paired=960, labelled=300, rate=0.96, answers={"stored": 960, ...})
    """

    control_rows: int
    paired: int
    labelled: int
    rate: float
    answers: Mapping[Fate, int]


@dataclass(frozen=True, slots=True)
class ShadowArm:
    """One model's serving signals: control's from the proxy's counters (every request), the challenger's
    from its answers that reached the comparison (``serving.requests`` counts those).

    Usage::

        ShadowArm("challenger", control=False, serving=Serving(9_870, 0.004, 52.0))
    """

    name: str
    control: bool
    serving: Serving


@dataclass(frozen=True, slots=True)
class PairedMetric:
    """One label metric of both models on the same labelled requests, and the paired test of the difference.

    ``n`` pairs where both models' values are defined; ``control`` and
    ``challenger`` their means there, ``difference`` challenger − control.
    ``method`` is McNemar's test for a proportion (``mcnemar`` holds its
    discordant pairs), the paired t for a mean (then ``ci_low`` and ``ci_high``
    bound the difference at 1 − α); None when the metric has no paired test
    (precision: each model's predicted positives are other requests).
    ``pvalue_adjusted`` is after the experiment's correction over its tested
    metrics. NaN where not computed.

    Usage::

        metric = snapshot.metric("accuracy")
        metric.difference, metric.pvalue_adjusted, metric.verdict
    """

    name: str
    role: Role
    kind: Kind
    goal: Goal
    method: PairedMethod | None
    n: int
    control: float
    challenger: float
    difference: float
    ci_low: float
    ci_high: float
    statistic: float
    pvalue: float
    pvalue_adjusted: float
    mcnemar: McNemar | None
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class ShadowSnapshot:
    """One comparison of a shadow experiment; see the module docstring.

    ``computed_at`` is when it was made and ``since`` where its window starts
    (Unix seconds, the experiment's first start, as the store keeps it).
    ``agreement`` is None for a model that does not predict classes;
    ``compared`` says whose numbers ``differences`` are.

    Usage::

        snapshot.pairing.rate, snapshot.agreement, [m.verdict for m in snapshot.metrics]
    """

    experiment: str
    computed_at: float
    since: float
    control: str
    challenger: str
    alpha: float
    correction: Correction
    pairing: Pairing
    arms: tuple[ShadowArm, ShadowArm]
    agreement: Agreement | None
    compared: Compared
    differences: Differences
    shift: Shift
    metrics: tuple[PairedMetric, ...]
    guardrails: tuple[GuardrailCheck, ...]

    def metric(self, name: str) -> PairedMetric:
        return next(m for m in self.metrics if m.name == name)
