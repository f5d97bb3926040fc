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

Only :func:`collect` reads the tracker's live state, and it copies it
(masked numpy sums over the ring): call it on the thread that feeds the
tracker. :func:`compute` works on those copies, so it can run on a worker
thread while the event loop keeps serving; :func:`evaluate` does both.

Usage::

    snapshot = evaluate(tracker)                 # now = tracker.clock()
    snapshot = evaluate(tracker, now=time.time())
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sidecar.drift.chi2 import chi2_homogeneity
from sidecar.drift.ks import ks_binned
from sidecar.drift.psi import psi, psi_verdict
from sidecar.drift.snapshot import DriftResult, DriftSnapshot, Method, MethodResult
from sidecar.drift.summary import effective_samples, window_stats
from sidecar.drift.tracker import DriftTracker
from sidecar.drift.verdicts import Verdict, pvalue_verdict
from sidecar.drift.window import Window, WindowTotals

__all__ = ["Collected", "collect", "compute", "evaluate"]


@dataclass(frozen=True)
class Collected:
    """Copies of a tracker's window totals at one instant: what :func:`compute` needs, and nothing live."""

    now: float
    window_seconds: float
    slice_seconds: float
    min_samples: int
    drift_share: float
    features: WindowTotals | None
    outputs: WindowTotals | None
    labels: WindowTotals | None


def collect(tracker: DriftTracker, now: float | None = None) -> Collected:
    """Copy the window totals; cheap (masked numpy sums over the ring), and on the thread that feeds the tracker."""
    now = tracker.clock() if now is None else now
    tracker.flush()

    def totals(window: Window | None) -> WindowTotals | None:
        return None if window is None else window.totals(now)

    return Collected(
        now=now,
        window_seconds=tracker.window_seconds,
        slice_seconds=tracker.slice_seconds,
        min_samples=tracker.min_samples,
        drift_share=tracker.drift_share,
        features=totals(tracker.features),
        outputs=totals(tracker.outputs),
        labels=totals(tracker.labels),
    )


def compute(collected: Collected) -> DriftSnapshot:
    """The statistics over collected totals; any thread, since it reads no live state."""
    c = collected
    features = _results(c.features, c.min_samples)
    labels = _results(c.labels, c.min_samples)
    judged = [result.verdict for result in features if result.verdict != "insufficient_data"]
    share = judged.count("drift") / len(judged) if judged else None
    verdict: Verdict = "insufficient_data" if share is None else "drift" if share > c.drift_share else "no_drift"
    end = (math.floor(c.now / c.slice_seconds) + 1) * c.slice_seconds
    return DriftSnapshot(
        evaluated_at=c.now,
        window_start=end - c.window_seconds,
        window_end=end,
        features=features,
        outputs=_results(c.outputs, c.min_samples),
        label=labels[0] if labels else None,
        drifted_share=share,
        drift_share=c.drift_share,
        verdict=verdict,
    )


def evaluate(tracker: DriftTracker, now: float | None = None) -> DriftSnapshot:
    """Drift over the window ending with the slice of ``now`` (default: the tracker's clock)."""
    return compute(collect(tracker, now))


def _results(totals: WindowTotals | None, min_samples: int) -> tuple[DriftResult, ...]:
    if totals is None:
        return ()
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
