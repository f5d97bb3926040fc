"""Streaming drift: live traffic against the reference profile, over a sliding window.

The pieces, by concept:

- :mod:`.window`: the ring of time slices of weighted per-bin counts and sums;
  the hot path, counting blocks of records column by column with numpy;
- :mod:`.tracker`: :class:`DriftTracker`, the windows of one model's
  features, outputs and labels, and the buffer that makes blocks of records;
- :mod:`.evaluate`: :func:`evaluate`, windows in, :class:`DriftSnapshot` out;
- the statistics, one file each: :mod:`.psi`, :mod:`.ks`, :mod:`.chi2`, the
  effect sizes :mod:`.wasserstein` and :mod:`.jensenshannon`, and the
  multiplicity correction :mod:`.holm`; the verdicts in :mod:`.verdicts` and
  the rule that combines them in :mod:`.rule`; window summaries in
  :mod:`.summary` and distinct counts in :mod:`.distinct`;
- :mod:`.bins`: :func:`bin_labels`, the bins' display names ("30–40").

Nothing here imports a web framework: records in, plain values out.

Usage::

    tracker = DriftTracker(profile, window_seconds=3600, slice_seconds=60, min_samples=200)
    tracker.update(records)                      # live traffic, record by record
    tracker.update_columns(rows, {"age": ages})  # or a table, column by column
    snapshot = evaluate(tracker)
    snapshot.feature("age").verdict  # "drift"
    bin_labels(profile.features["age"])  # ("≤ 23.5", "23.5–28", ..., "> 61")
"""

from __future__ import annotations

from sidecar.drift.bins import bin_labels
from sidecar.drift.chi2 import chi2_homogeneity
from sidecar.drift.evaluate import Collected, collect, compute, evaluate
from sidecar.drift.holm import holm
from sidecar.drift.jensenshannon import jensenshannon
from sidecar.drift.ks import ks_binned
from sidecar.drift.psi import EPSILON, PSI_DRIFT, PSI_MODERATE, psi, psi_verdict
from sidecar.drift.rule import EFFECT_THRESHOLD, RULES, Effect, Rule, VerdictRule
from sidecar.drift.snapshot import DriftResult, DriftSnapshot, Method, MethodResult, WindowStats
from sidecar.drift.tracker import ColumnValues, DriftTracker, Source
from sidecar.drift.verdicts import ALPHA, Verdict, pvalue_verdict
from sidecar.drift.wasserstein import Side, normed_wasserstein, wasserstein_binned

__all__ = [
    "ALPHA",
    "Collected",
    "ColumnValues",
    "EFFECT_THRESHOLD",
    "EPSILON",
    "PSI_DRIFT",
    "PSI_MODERATE",
    "RULES",
    "DriftResult",
    "DriftSnapshot",
    "DriftTracker",
    "Effect",
    "Method",
    "MethodResult",
    "Rule",
    "Side",
    "Source",
    "Verdict",
    "VerdictRule",
    "WindowStats",
    "bin_labels",
    "chi2_homogeneity",
    "collect",
    "compute",
    "evaluate",
    "holm",
    "jensenshannon",
    "ks_binned",
    "normed_wasserstein",
    "psi",
    "psi_verdict",
    "pvalue_verdict",
    "wasserstein_binned",
]
