"""Evaluation: the tracker's windows in, one immutable :class:`DriftSnapshot` out.

Per feature, model output and label, over the reference bins:

- PSI (:mod:`.psi`); the test, KS for a numeric channel and chi-square for a
  categorical one (:mod:`.ks`, :mod:`.chi2`); the effect size, the normed
  Wasserstein distance for a numeric channel and the Jensen–Shannon distance
  for a categorical one (:mod:`.wasserstein`, :mod:`.jensenshannon`);
- the tests' p-values corrected by Holm's procedure (:mod:`.holm`) within
  each family of one evaluation: the features, the model outputs, the label.
  A family answers one question, and has its own verdict downstream (the
  dataset's drift and the retraining trigger; prediction drift; label
  drift), so each keeps its own chance of a false alarm at alpha. Pooling
  them would let a wide model's hundreds of features blunt the test of its
  two outputs;
- the verdict by the tracker's :class:`VerdictRule` (:mod:`.rule`): real
  and material, or PSI > 0.2, by default;
- fewer than ``min_samples`` non-null values in the window, or in the
  reference, and every method says ``"insufficient_data"`` with no score,
  and the channel is not one of its family's tests;
- the reference counts are its ratios times its count, the current counts
  the window's weighted shares times its Kish effective sample size.

Dataset level, over features: the share of drifted features among those with
enough data, and ``"drift"`` when it exceeds the tracker's ``drift_share``.

Only :func:`collect` reads the tracker's live state, and it copies it
(masked numpy sums over the ring): call it on the thread that feeds the
tracker. :func:`compute` works on those copies, so it can run on a worker
thread while the event loop keeps serving; :func:`evaluate` does both. The
work is O(channels × bins), and O(channels · log channels) for the
correction.

Usage::

    snapshot = evaluate(tracker)                 # now = tracker.clock()
    snapshot = evaluate(tracker, now=time.time())
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sidecar.drift.bins import bin_labels
from sidecar.drift.chi2 import chi2_homogeneity
from sidecar.drift.holm import holm
from sidecar.drift.jensenshannon import jensenshannon
from sidecar.drift.ks import ks_binned
from sidecar.drift.psi import psi, psi_verdict
from sidecar.drift.rule import Effect, VerdictRule
from sidecar.drift.snapshot import DriftResult, DriftSnapshot, Method, MethodResult, WindowStats
from sidecar.drift.summary import effective_samples, window_stats
from sidecar.drift.tracker import DriftTracker
from sidecar.drift.verdicts import Verdict
from sidecar.drift.wasserstein import Side, normed_wasserstein
from sidecar.drift.window import Window, WindowTotals
from sidecar.reference import Kind

__all__ = ["Collected", "collect", "compute", "evaluate"]


@dataclass(frozen=True)
class Collected:
    """Copies of a tracker's window totals at one instant: what :func:`compute` needs, and nothing live."""

    now: float
    window_seconds: float
    slice_seconds: float
    min_samples: int
    drift_share: float
    rule: VerdictRule
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
        rule=tracker.rule,
        features=totals(tracker.features),
        outputs=totals(tracker.outputs),
        labels=totals(tracker.labels),
    )


def compute(collected: Collected) -> DriftSnapshot:
    """The statistics over collected totals; any thread, since it reads no live state."""
    c = collected
    features = _family(c.features, c.min_samples, c.rule)
    labels = _family(c.labels, c.min_samples, c.rule)
    judged = [result.verdict for result in features if result.verdict != "insufficient_data"]
    share = judged.count("drift") / len(judged) if judged else None
    verdict: Verdict = "insufficient_data" if share is None else "drift" if share > c.drift_share else "no_drift"
    end = (math.floor(c.now / c.slice_seconds) + 1) * c.slice_seconds
    return DriftSnapshot(
        evaluated_at=c.now,
        window_start=end - c.window_seconds,
        window_end=end,
        features=features,
        outputs=_family(c.outputs, c.min_samples, c.rule),
        label=labels[0] if labels else None,
        drifted_share=share,
        drift_share=c.drift_share,
        verdict=verdict,
        rule=c.rule,
    )


def evaluate(tracker: DriftTracker, now: float | None = None) -> DriftSnapshot:
    """Drift over the window ending with the slice of ``now`` (default: the tracker's clock)."""
    return compute(collect(tracker, now))


@dataclass(frozen=True)
class _Scores:
    """A channel's statistics with enough data, before the correction that needs its whole family."""

    psi: float
    test: Method
    statistic: float
    pvalue: float
    effect: Effect
    size: float


@dataclass(frozen=True)
class _Measured:
    """A channel's window facts and, with enough data, its scores."""

    name: str
    kind: Kind
    weight: float
    effective_samples: float
    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    stats: WindowStats
    scores: _Scores | None


def _family(totals: WindowTotals | None, min_samples: int, rule: VerdictRule) -> tuple[DriftResult, ...]:
    """The results of one window's channels, their p-values corrected together."""
    if totals is None:
        return ()
    measured = [_measure(totals, j, min_samples) for j in range(len(totals.channels))]
    corrected = iter(holm([m.scores.pvalue for m in measured if m.scores is not None]))
    return tuple(_judge(m, None if m.scores is None else next(corrected), rule) for m in measured)


def _measure(totals: WindowTotals, j: int, min_samples: int) -> _Measured:
    channel = totals.channels[j]
    dist = channel.dist
    stats = window_stats(totals, j)
    ratios = np.asarray(dist.ratios)
    # Profiles round their ratios: make each side sum to exactly 1.
    reference = ratios / ratios.sum() if ratios.sum() > 0.0 else ratios
    counts = totals.counts[channel.bins]
    weight = float(counts.sum())
    current = counts / weight if weight > 0.0 else counts
    n_current = effective_samples(totals, j)
    n_reference = float(dist.stats.count)
    scores = None
    if stats.count >= min_samples and dist.stats.count >= min_samples:
        if dist.kind == "numeric":
            statistic, pvalue = ks_binned(reference, n_reference, current, n_current)
            size = normed_wasserstein(
                np.asarray(dist.edges),
                Side(reference, dist.stats.mean, dist.stats.min, dist.stats.max),
                Side(current, stats.mean, stats.min, stats.max),
                dist.stats.std,
            )
            scores = _Scores(psi(reference, current), "ks", statistic, pvalue, "wasserstein", size)
        else:
            statistic, pvalue, _ = chi2_homogeneity(reference * n_reference, current * n_current)
            size = jensenshannon(reference, current)
            scores = _Scores(psi(reference, current), "chi2", statistic, pvalue, "jensenshannon", size)
    return _Measured(
        name=channel.name,
        kind=dist.kind,
        weight=weight,
        effective_samples=n_current,
        labels=bin_labels(dist),
        reference=tuple(reference.tolist()),
        current=tuple(current.tolist()),
        stats=stats,
        scores=scores,
    )


def _judge(measured: _Measured, corrected: float | None, rule: VerdictRule) -> DriftResult:
    s = measured.scores
    if s is None or corrected is None:
        test: Method = "ks" if measured.kind == "numeric" else "chi2"
        effect: Method = "wasserstein" if measured.kind == "numeric" else "jensenshannon"
        methods = (
            MethodResult("psi", None, None, "insufficient_data"),
            MethodResult(test, None, None, "insufficient_data"),
            MethodResult(effect, None, None, "insufficient_data"),
        )
        verdict: Verdict = "insufficient_data"
    else:
        methods = (
            MethodResult("psi", s.psi, None, psi_verdict(s.psi)),
            MethodResult(s.test, s.statistic, s.pvalue, rule.significant(corrected), corrected),
            MethodResult(s.effect, s.size, None, rule.material(s.effect, s.size)),
        )
        verdict = rule.verdict(psi=s.psi, corrected_pvalue=corrected, effect=s.effect, size=s.size)
    return DriftResult(
        name=measured.name,
        kind=measured.kind,
        weight=measured.weight,
        effective_samples=measured.effective_samples,
        methods=methods,
        verdict=verdict,
        labels=measured.labels,
        reference=measured.reference,
        current=measured.current,
        stats=measured.stats,
    )
