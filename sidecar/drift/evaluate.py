"""Evaluation: the tracker's windows in, one immutable :class:`DriftSnapshot` out.

Per feature, model output and label, over the reference bins:

- numeric: PSI and KS; categorical: PSI and chi-square (:mod:`.psi`,
  :mod:`.ks`, :mod:`.chi2`);
- the verdict is PSI's (drift above 0.2, moderate above 0.1); the KS and
  chi-square p-values and their own verdicts (drift when p < 0.05) are
  reported alongside;
- fewer than ``min_samples`` non-null values in the window, or in the
  reference, and every method says ``"insufficient_data"`` with no score;
- the reference counts are its ratios times its count, the current counts
  the window's weighted shares times its Kish effective sample size.

Dataset level, over features: the share of drifted features among those with
enough data, and ``"drift"`` when it exceeds the tracker's ``drift_share``.

Only :meth:`Window.totals` reads the tracker's live state, and it copies it
(masked numpy sums over the ring): call ``evaluate`` on the thread that
feeds the tracker. The rest works on those copies.

Usage::

    snapshot = evaluate(tracker)                 # now = tracker.clock()
    snapshot = evaluate(tracker, now=time.time())
"""

from __future__ import annotations

import math

import numpy as np

from sidecar.drift.chi2 import chi2_homogeneity
from sidecar.drift.ks import ks_binned
from sidecar.drift.psi import psi, psi_verdict
from sidecar.drift.snapshot import DriftResult, DriftSnapshot, Method, MethodResult
from sidecar.drift.summary import effective_samples, window_stats
from sidecar.drift.tracker import DriftTracker
from sidecar.drift.verdicts import Verdict, pvalue_verdict
from sidecar.drift.window import Window, WindowTotals

__all__ = ["evaluate"]


def evaluate(tracker: DriftTracker, now: float | None = None) -> DriftSnapshot:
    """Drift over the window ending with the slice of ``now`` (default: the tracker's clock)."""
    now = tracker.clock() if now is None else now
    features = _results(tracker.features, now, tracker.min_samples)
    labels = _results(tracker.labels, now, tracker.min_samples)
    judged = [result.verdict for result in features if result.verdict != "insufficient_data"]
    share = judged.count("drift") / len(judged) if judged else None
    verdict: Verdict = "insufficient_data" if share is None else "drift" if share > tracker.drift_share else "no_drift"
    end = (math.floor(now / tracker.slice_seconds) + 1) * tracker.slice_seconds
    return DriftSnapshot(
        evaluated_at=now,
        window_start=end - tracker.window_seconds,
        window_end=end,
        features=features,
        outputs=_results(tracker.outputs, now, tracker.min_samples),
        label=labels[0] if labels else None,
        drifted_share=share,
        drift_share=tracker.drift_share,
        verdict=verdict,
    )


def _results(window: Window | None, now: float, min_samples: int) -> tuple[DriftResult, ...]:
    if window is None:
        return ()
    totals = window.totals(now)
    return tuple(_result(totals, j, min_samples) for j in range(len(totals.channels)))


def _result(totals: WindowTotals, j: int, min_samples: int) -> DriftResult:
    dist = totals.channels[j].dist
    stats = window_stats(totals, j)
    ratios = np.asarray(dist.ratios)
    # Profiles round their ratios: make each side sum to exactly 1.
    reference = ratios / ratios.sum() if ratios.sum() > 0.0 else ratios
    counts = totals.counts[totals.channels[j].bins]
    weight = float(counts.sum())
    current = counts / weight if weight > 0.0 else counts
    n_current = effective_samples(totals, j)
    n_reference = float(dist.stats.count)
    test: Method = "ks" if dist.kind == "numeric" else "chi2"
    if stats.count < min_samples or dist.stats.count < min_samples:
        methods = (
            MethodResult("psi", None, None, "insufficient_data"),
            MethodResult(test, None, None, "insufficient_data"),
        )
    else:
        score = psi(reference, current)
        if test == "ks":
            statistic, pvalue = ks_binned(reference, n_reference, current, n_current)
        else:
            statistic, pvalue, _ = chi2_homogeneity(reference * n_reference, current * n_current)
        methods = (
            MethodResult("psi", score, None, psi_verdict(score)),
            MethodResult(test, statistic, pvalue, pvalue_verdict(pvalue)),
        )
    return DriftResult(
        name=totals.channels[j].name,
        kind=dist.kind,
        weight=weight,
        effective_samples=n_current,
        methods=methods,
        verdict=methods[0].verdict,
        labels=dist.labels,
        reference=tuple(reference.tolist()),
        current=tuple(current.tolist()),
        stats=stats,
    )
