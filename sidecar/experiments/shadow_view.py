"""The ``shadow`` section of ``GET /api/v1/experiments`` and the shadow metrics' samples, from a
:class:`~.shadow_snapshot.ShadowSnapshot`.

Rendering only: every figure comes from the snapshot. The keys are fixed, in
this order; a number that could not be computed is ``null``; times are RFC
3339 (UTC, milliseconds)::

    {"experiment": "ranker-v3", "computed_at": "...", "since": "...", "control": "control",
     "challenger": "challenger", "alpha": 0.05, "correction": "holm",
     "pairing": {"control_rows", "paired", "labelled", "rate",
                 "answers": {"stored", "failed", "not_captured", "unreadable"}},
     "arms": [{"name", "control", "requests", "error_rate", "latency_p95_ms"}, ...],
     "agreement": {"n", "agreed", "rate", "ci_low", "ci_high"},
     "differences": {"of", "n", "mean", "standard_deviation", "mean_absolute", "p05", "p50", "p95"},
     "shift": {"psi", "verdict", "bins", "control", "challenger"},
     "metrics": [{"name", "role", "kind", "goal", "method", "n", "control", "challenger", "difference",
                  "ci_low", "ci_high", "statistic", "pvalue", "pvalue_adjusted",
                  "discordant": {"control_only", "challenger_only", "exact"}, "verdict"}, ...],
     "guardrails": [{"name", "control", "challenger", "increase", "max_increase", "breached"}, ...]}

``agreement`` is ``null`` for a model that does not predict classes, and a
metric's ``discordant`` for a metric not tested by McNemar's test.

The samples' label values come from the definition (the two variants' names,
the metrics') and from fixed lists (:data:`DIFFERENCE_STATS`,
:data:`EFFECT_STATS`), never from payloads.

Usage::

    body = shadow_json(runner.snapshot)
    for (metric, stat), value in effect_samples(snapshot): ...
"""

from __future__ import annotations

import math
from typing import Any, Final

from sidecar.experiments.shadow_snapshot import PairedMetric, ShadowSnapshot
from sidecar.records import rfc3339

__all__ = ["DIFFERENCE_STATS", "EFFECT_STATS", "difference_samples", "effect_samples", "shadow_json"]

# The stat label of mlsidecar_shadow_score_difference and of mlsidecar_shadow_effect.
DIFFERENCE_STATS: Final = ("mean", "mean_absolute", "p05", "p50", "p95")
EFFECT_STATS: Final = ("control", "challenger", "difference", "pvalue", "pvalue_adjusted")


def shadow_json(snapshot: ShadowSnapshot) -> dict[str, Any]:
    """The ``shadow`` section; see the module docstring."""
    pairing, agreement, differences, shift = snapshot.pairing, snapshot.agreement, snapshot.differences, snapshot.shift
    return {
        "experiment": snapshot.experiment,
        "computed_at": rfc3339(snapshot.computed_at),
        "since": rfc3339(snapshot.since),
        "control": snapshot.control,
        "challenger": snapshot.challenger,
        "alpha": snapshot.alpha,
        "correction": snapshot.correction,
        "pairing": {
            "control_rows": pairing.control_rows,
            "paired": pairing.paired,
            "labelled": pairing.labelled,
            "rate": _number(pairing.rate),
            "answers": dict(pairing.answers),
        },
        "arms": [
            {
                "name": arm.name,
                "control": arm.control,
                "requests": arm.serving.requests,
                "error_rate": _number(arm.serving.error_rate),
                "latency_p95_ms": _number(arm.serving.latency_p95_ms),
            }
            for arm in snapshot.arms
        ],
        "agreement": None
        if agreement is None
        else {
            "n": agreement.n,
            "agreed": agreement.agreed,
            "rate": _number(agreement.rate),
            "ci_low": _number(agreement.ci_low),
            "ci_high": _number(agreement.ci_high),
        },
        "differences": {
            "of": snapshot.compared,
            "n": differences.n,
            "mean": _number(differences.mean),
            "standard_deviation": _number(differences.standard_deviation),
            "mean_absolute": _number(differences.mean_absolute),
            "p05": _number(differences.p05),
            "p50": _number(differences.p50),
            "p95": _number(differences.p95),
        },
        "shift": {
            "psi": _number(shift.psi),
            "verdict": shift.verdict,
            "bins": shift.bins,
            "control": shift.control,
            "challenger": shift.challenger,
        },
        "metrics": [_metric(metric) for metric in snapshot.metrics],
        "guardrails": [
            {
                "name": g.name,
                "control": _number(g.control),
                "challenger": _number(g.treatment),
                "increase": _number(g.increase),
                "max_increase": g.max_increase,
                "breached": g.breached,
            }
            for g in snapshot.guardrails
        ],
    }


def difference_samples(snapshot: ShadowSnapshot) -> list[tuple[str, float]]:
    """``(stat, value)`` for ``mlsidecar_shadow_score_difference``; NaN where not computed."""
    return [(stat, float(getattr(snapshot.differences, stat))) for stat in DIFFERENCE_STATS]


def effect_samples(snapshot: ShadowSnapshot) -> list[tuple[tuple[str, str], float]]:
    """``((metric, stat), value)`` for ``mlsidecar_shadow_effect``; NaN where not computed."""
    return [((metric.name, stat), float(getattr(metric, stat))) for metric in snapshot.metrics for stat in EFFECT_STATS]


def _metric(metric: PairedMetric) -> dict[str, Any]:
    test = metric.mcnemar
    return {
        "name": metric.name,
        "role": metric.role,
        "kind": metric.kind,
        "goal": metric.goal,
        "method": metric.method,
        "n": metric.n,
        **{
            key: _number(getattr(metric, key))
            for key in (
                "control",
                "challenger",
                "difference",
                "ci_low",
                "ci_high",
                "statistic",
                "pvalue",
                "pvalue_adjusted",
            )
        },  # fmt: skip
        "discordant": None
        if test is None
        else {"control_only": test.control_only, "challenger_only": test.challenger_only, "exact": test.exact},
        "verdict": metric.verdict,
    }


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value
