"""What alert conditions are judged on: one plain value object per evaluation.

The wiring builds a :class:`Signals` from the monitors' latest snapshot every
evaluation interval. It knows nothing of where the numbers came from, so the
condition language and the engine can be tested with literal values.

A value of None means "not enough data" (too few samples, no labels yet): a
condition that reads it is *unknown*, which never fires (see
:mod:`sidecar.alerting.evaluation`). NaN is read as None for the same reason:
it says the statistic could not be computed, not that it is small or large.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "FEATURE_SIGNALS",
    "SCALAR_SIGNALS",
    "SIGNALS",
    "TEXT_SIGNALS",
    "Signals",
    "rank_drift",
]

# Signals with one value per sidecar: performance, serving health, data
# quality and volume, and the drift summaries that are not per feature.
SCALAR_SIGNALS: Final[tuple[str, ...]] = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auc_roc",
    "mae",
    "rmse",
    "mape",
    "ndcg",
    "error_rate",
    "p99_latency_seconds",
    "prediction_psi",
    "drifted_feature_share",
    "quality_violations",
    "volume",
    "missing_periods",
    "freshness_seconds",
    "label_coverage",
    "accuracy_drop",
)
# Signals with one value per feature, and how a condition without a feature
# selector sums them up: PSI grows with drift, so the worst feature is the
# largest; a p-value shrinks with drift, so the worst feature is the smallest.
FEATURE_SIGNALS: Final[Mapping[str, Literal["max", "min"]]] = {
    "psi": "max",
    "ks_pvalue": "min",
    "chi2_pvalue": "min",
}
# Signals whose value is one word of a fixed list, compared with == and != only: the A/B experiment's
# decision (sidecar.experiments.decision.DECISIONS, written out here because this module imports nothing of
# the sidecar; a test holds the two lists equal).
TEXT_SIGNALS: Final[Mapping[str, tuple[str, ...]]] = {
    "experiment_decision": ("invalid", "revert", "roll_out", "no_difference", "keep_running"),
}
SIGNALS: Final[frozenset[str]] = frozenset(SCALAR_SIGNALS) | frozenset(FEATURE_SIGNALS) | frozenset(TEXT_SIGNALS)


def _known(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


@dataclass(frozen=True)
class Signals:
    """The signal values of one evaluation; a missing name reads as None (insufficient data).

    ``texts`` holds the :data:`TEXT_SIGNALS`' words (None: no experiment, or
    none analysed yet). ``top_drift`` is context for people, not a signal:
    the most drifted features with their PSI, largest first (:func:`rank_drift`
    builds it).

    Usage::

        Signals(
            values={"accuracy": 0.82, "error_rate": 0.01, "accuracy_drop": None},
            features={"psi": {"age": 0.31, "income": 0.05}, "ks_pvalue": {"age": 0.001}},
            model_version="7",
            top_drift=rank_drift({"age": 0.31, "income": 0.05}),
            texts={"experiment_decision": "keep_running"},
        )
    """

    values: Mapping[str, float | None] = field(default_factory=dict)
    features: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    model_version: str | None = None
    top_drift: tuple[tuple[str, float], ...] = ()
    texts: Mapping[str, str | None] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        """A scalar signal's value, or None."""
        return _known(self.values.get(name))

    def text(self, name: str) -> str | None:
        """A text signal's word, or None."""
        return self.texts.get(name)

    def feature_value(self, name: str, feature: str) -> float | None:
        """One feature's value of a per-feature signal, or None."""
        return _known(self.features.get(name, {}).get(feature))

    def worst(self, name: str) -> tuple[str, float] | None:
        """The feature with the most drift by a per-feature signal, and its value; None without any value.

        Ties go to the first feature in the mapping's order, so the answer is
        the same every evaluation.
        """
        pick = FEATURE_SIGNALS[name]
        best: tuple[str, float] | None = None
        for feature, raw in self.features.get(name, {}).items():
            value = _known(raw)
            if value is None:
                continue
            if best is None or (value > best[1] if pick == "max" else value < best[1]):
                best = (feature, value)
        return best


def rank_drift(psi: Mapping[str, float | None], limit: int = 5) -> tuple[tuple[str, float], ...]:
    """The ``limit`` features with the largest PSI, largest first; features without a value are left out."""
    known = [(feature, value) for feature, raw in psi.items() if (value := _known(raw)) is not None]
    # sorted() is stable, so equal scores keep the mapping's (the profile's) order.
    return tuple(sorted(known, key=lambda item: -item[1])[:limit])
