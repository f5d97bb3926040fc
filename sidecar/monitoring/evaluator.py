"""The data monitors of one sidecar, and the evaluator that publishes their snapshot.

:class:`DataMonitors` subscribes to the capture worker. Per batch of records
it does O(rows × features) counting (drift windows, quality checks), or
collects warm-up records while it learns a reference. Every
``SIDECAR_EVAL_INTERVAL_SECONDS`` it evaluates drift and quality into one
immutable :class:`Snapshot`, which the admin app and the metrics collector
read without computing anything themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sidecar.drift import (
    ALPHA,
    EFFECT_THRESHOLD,
    DriftSnapshot,
    DriftTracker,
    Rule,
    VerdictRule,
    collect,
    compute,
    evaluate,
)
from sidecar.monitoring.learning import LeftOut, ReferenceLearner
from sidecar.quality import QualityMonitor, QualitySnapshot
from sidecar.records import PredictionRecord
from sidecar.reference import ReferenceProfile

__all__ = ["DataMonitors", "DriftSettings", "ReferenceStatus", "ReferenceSource", "Snapshot", "status_json"]

logger = logging.getLogger("sidecar.monitoring.evaluator")

# file: SIDECAR_REFERENCE_PATH; learning/learned: from warm-up traffic;
# disabled: a bad profile with SIDECAR_REFERENCE_ON_ERROR=warn, or learning failed.
ReferenceSource = Literal["file", "learning", "learned", "disabled"]


@dataclass(frozen=True)
class ReferenceStatus:
    source: ReferenceSource
    version: str | None = None
    content_hash: str | None = None
    created_at: str | None = None
    path: str | None = None
    warmup_seen: int = 0
    warmup_target: int = 0
    problem: str | None = None
    left_out: LeftOut | None = None  # learned references: the warm-up keys that did not become features

    @classmethod
    def of(cls, profile: ReferenceProfile, source: ReferenceSource, path: str | None = None) -> ReferenceStatus:
        return cls(source, profile.version, profile.content_hash, profile.created_at, path)


@dataclass(frozen=True)
class Snapshot:
    """Everything the admin app and ``/metrics`` show about the data, as of ``taken_at``."""

    taken_at: float
    reference: ReferenceStatus
    drift: DriftSnapshot | None
    quality: QualitySnapshot


@dataclass(frozen=True)
class DriftSettings:
    """The drift window and the verdict rule, as the settings give them (``SIDECAR_DRIFT_*``).

    Usage::

        DriftSettings(3600, 60, 200, verdict="combined", alpha=0.05, wasserstein=0.1, jensenshannon=0.1)
    """

    window_seconds: float
    slice_seconds: float
    min_samples: int
    verdict: Rule = "combined"
    alpha: float = ALPHA
    wasserstein: float = EFFECT_THRESHOLD
    jensenshannon: float = EFFECT_THRESHOLD

    @property
    def rule(self) -> VerdictRule:
        return VerdictRule(self.verdict, self.alpha, self.wasserstein, self.jensenshannon)


class DataMonitors:
    """Drift tracker, quality checks and reference (given or learned) for one model.

    Usage::

        monitors = DataMonitors(profile, status, quality, drift=DriftSettings(3600, 60, 200), warmup=None)
        worker.subscribe(monitors.observe)     # the CaptureWorker
        task = asyncio.create_task(monitors.run(interval=15))
        monitors.snapshot.drift.verdict
    """

    def __init__(
        self,
        profile: ReferenceProfile | None,
        status: ReferenceStatus,
        quality: QualityMonitor,
        *,
        drift: DriftSettings,
        warmup: ReferenceLearner | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.quality = quality
        self.drift = drift
        self.clock = clock
        self.learner = warmup if profile is None else None
        self.tracker: DriftTracker | None = None
        self.status = status
        self._learning: asyncio.Task[None] | None = None
        if profile is not None:
            self._attach(profile, status)
        self.snapshot = self.evaluate()

    @property
    def profile(self) -> ReferenceProfile | None:
        return None if self.tracker is None else self.tracker.profile

    def observe(self, records: Sequence[PredictionRecord]) -> None:
        """The capture subscriber: count records, or collect them while learning the reference."""
        self.quality.observe(records)
        if self.tracker is not None:
            self.tracker.update(records)
        elif self.learner is not None and self._learning is None:
            done = self.learner.add(records)
            self.status = ReferenceStatus("learning", warmup_seen=self.learner.seen, warmup_target=self.learner.target)
            if done:
                # The build is CPU work; off the loop, so serving never waits for it.
                self._learning = asyncio.get_running_loop().create_task(self._learn(self.learner), name="learn-ref")

    async def _learn(self, learner: ReferenceLearner) -> None:
        try:
            learned = await asyncio.to_thread(learner.build)
        except Exception as exc:
            logger.exception("learning the reference profile failed; drift is disabled")
            self.status = ReferenceStatus("disabled", problem=f"learning the reference failed: {exc}")
        else:
            profile, left_out = learned.profile, learned.left_out
            logger.info(
                "reference learned from %d warm-up records: version %s, %d features; keys left out: %d rare,"
                " %d with a long name, %d past SIDECAR_MAX_FEATURES=%d",
                learner.target,
                profile.version,
                len(profile.features),
                left_out.rare,
                left_out.long_name,
                left_out.max_features,
                learner.max_features,
            )
            status = ReferenceStatus.of(profile, "learned")
            self._attach(profile, replace(status, left_out=left_out))
        self.learner = None

    def _attach(self, profile: ReferenceProfile, status: ReferenceStatus) -> None:
        d = self.drift
        self.tracker = DriftTracker(
            profile,
            window_seconds=d.window_seconds,
            slice_seconds=d.slice_seconds,
            min_samples=d.min_samples,
            rule=d.rule,
            clock=self.clock,
        )
        self.quality.set_profile(profile)
        self.status = status

    def evaluate(self) -> Snapshot:
        """Evaluate drift and quality now, all on the calling thread (start-up and tests)."""
        now = self.clock()
        drift = None if self.tracker is None else evaluate(self.tracker, now)
        return Snapshot(now, self.status, drift, self.quality.snapshot(now))

    async def _evaluate_off_loop(self) -> Snapshot:
        # Copying the live counts is quick and must happen on the loop that
        # feeds them; the statistics (tens of ms for wide models) run on a
        # worker thread, so in-flight requests never wait for them.
        now = self.clock()
        status, quality = self.status, self.quality.snapshot(now)
        collected = None if self.tracker is None else collect(self.tracker, now)
        drift = None if collected is None else await asyncio.to_thread(compute, collected)
        return Snapshot(now, status, drift, quality)

    async def run(self, interval: float) -> None:
        """Publish a fresh snapshot every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.snapshot = await self._evaluate_off_loop()
            except Exception:
                # Keep serving the last good snapshot; the failure is in the log.
                logger.exception("evaluation failed; keeping the previous snapshot")

    async def close(self) -> None:
        if self._learning is not None:
            self._learning.cancel()
            await asyncio.gather(self._learning, return_exceptions=True)


def status_json(status: ReferenceStatus) -> dict[str, Any]:
    out: dict[str, Any] = {"source": status.source}
    for key in ("version", "content_hash", "created_at", "path", "problem"):
        value = getattr(status, key)
        if value is not None:
            out[key] = value
    if status.source == "learning":
        out["warmup"] = {"seen": status.warmup_seen, "target": status.warmup_target}
    if status.left_out is not None:
        out["left_out"] = status.left_out.as_dict()
    return out
