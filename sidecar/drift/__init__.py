"""Streaming drift: live traffic against the reference profile, over a sliding window.

The pieces, by concept:

- :mod:`.window`: the ring of time slices of weighted per-bin counts and sums;
  the hot path, counting blocks of records column by column with numpy;
- :mod:`.tracker`: :class:`DriftTracker`, the windows of one model's
  features, outputs and labels, and the buffer that makes blocks of records;
- :mod:`.evaluate`: :func:`evaluate`, windows in, :class:`DriftSnapshot` out;
- the statistics, one file each: :mod:`.psi`, :mod:`.ks`, :mod:`.chi2`, with
  the verdict rules in :mod:`.verdicts`; window summaries in :mod:`.summary`
  and distinct counts in :mod:`.distinct`.

Nothing here imports a web framework: records in, plain values out.

Usage::

    tracker = DriftTracker(profile, window_seconds=3600, slice_seconds=60, min_samples=200)
    tracker.update(records)                      # live traffic, record by record
    tracker.update_columns(rows, {"age": ages})  # or a table, column by column
    snapshot = evaluate(tracker)
    snapshot.feature("age").verdict  # "drift"
"""

from __future__ import annotations

from sidecar.drift.chi2 import chi2_homogeneity
from sidecar.drift.evaluate import Collected, collect, compute, evaluate
from sidecar.drift.ks import ks_binned
from sidecar.drift.psi import EPSILON, PSI_DRIFT, PSI_MODERATE, psi, psi_verdict
from sidecar.drift.snapshot import DriftResult, DriftSnapshot, Method, MethodResult, WindowStats
from sidecar.drift.tracker import ColumnValues, DriftTracker, Source
from sidecar.drift.verdicts import ALPHA, Verdict, pvalue_verdict

__all__ = [
    "ALPHA",
    "Collected",
    "ColumnValues",
    "EPSILON",
    "PSI_DRIFT",
    "PSI_MODERATE",
    "DriftResult",
    "DriftSnapshot",
    "DriftTracker",
    "Method",
    "MethodResult",
    "Source",
    "Verdict",
    "WindowStats",
    "chi2_homogeneity",
    "collect",
    "compute",
    "evaluate",
    "ks_binned",
    "psi",
    "psi_verdict",
    "pvalue_verdict",
]
