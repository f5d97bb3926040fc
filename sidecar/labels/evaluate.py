"""Live performance out: every interval, one immutable :class:`~sidecar.labels.snapshot.LabelsSnapshot`.

:class:`PerformanceEvaluator` reads the labelled window back from the store
at start-up, then every ``SIDECAR_EVAL_INTERVAL_SECONDS``:

- recomputes the realised metrics of each (model, variant) from the window's
  rows, on a worker thread and only when rows came or went;
- asks the store for the label coverage: stored predictions in the window
  that have a label;
- estimates accuracy before labels arrive (classification): the weighted
  mean confidence of every captured prediction in the window, which it
  counts as the capture subscriber (:class:`~sidecar.performance.estimate.ConfidenceWindow`);
- runs the retraining checks on the primary variant's metrics and the drift
  verdict;
- publishes all of it, with the label counters of the
  :class:`~sidecar.labels.ingest.LabelIngest` and the retraining status, as
  one snapshot, which ``/api/v1/performance``, ``/metrics`` and the alert
  signals read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from sidecar.labels.ingest import LabelIngest
from sidecar.labels.retraining import Retrainer
from sidecar.labels.snapshot import LabelsSnapshot
from sidecar.labels.window import LabelledWindow
from sidecar.monitoring.evaluator import DataMonitors
from sidecar.performance import JoinedRow, MetricResult, PerformanceConfig, PerformanceSnapshot, compute
from sidecar.performance.estimate import ConfidenceWindow
from sidecar.records import PredictionRecord
from sidecar.store import Coverage, Labelled, PredictionStore, StoreError

__all__ = ["PerformanceEvaluator"]

logger = logging.getLogger("sidecar.labels.evaluate")


class PerformanceEvaluator:
    """Computes live performance from the labelled window and publishes it as :attr:`snapshot`.

    Usage::

        evaluator = PerformanceEvaluator(store, config, window, ingest, model="iris", retrainer=retrainer,
                                         data=monitors)
        monitor.subscribe(evaluator.observe)        # confidences, for the estimated accuracy
        task = asyncio.create_task(evaluator.run(interval=15))
        evaluator.snapshot.performance[0].metric("accuracy")
    """

    def __init__(
        self,
        store: PredictionStore,
        config: PerformanceConfig,
        window: LabelledWindow,
        ingest: LabelIngest,
        *,
        model: str,
        retrainer: Retrainer,
        data: DataMonitors,
        primary_variant: str = "primary",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.window = window
        self.ingest = ingest
        self.model = model
        self.retrainer = retrainer
        self.data = data
        self.primary_variant = primary_variant
        self.clock = clock
        self.confidence = ConfidenceWindow(window.seconds)
        now = clock()
        # Complete from the start: the API shows the same keys before the first evaluation as after it.
        self.snapshot = LabelsSnapshot(
            now, model, config.task, window.seconds, config.min_labels, retraining=retrainer.status(now)
        )

    def observe(self, records: Sequence[PredictionRecord]) -> None:
        """The capture subscriber: count each prediction's confidence. O(rows), never raises on a record."""
        if self.config.task != "classification":
            return
        add = self.confidence.add
        # The time they are counted, not their own: the buckets then stay in order when
        # a slow request's record arrives after faster, later ones.
        now = self.clock()
        for record in records:
            add(record.variant, record.confidence, record.weight, now)

    async def load(self) -> None:
        """Read the labelled window back from the store, so a restart keeps the performance it had."""
        self.window.load(await self.store.labelled(self.clock() - self.window.seconds, self.model))

    async def evaluate(self) -> LabelsSnapshot:
        """Recompute what changed, run the retraining checks, then publish and return the snapshot."""
        now = self.clock()
        previous = self.snapshot
        # The counters are copied with the rows, so the joined count and the labelled rows agree.
        outcomes, delay = dict(self.ingest.outcomes), self.ingest.delay_histogram()
        performance = previous.performance
        rows = self.window.take_changed(now)
        if rows is not None:
            try:
                # Converting and scoring 100,000 rows takes a few hundred ms: off the loop.
                performance = await asyncio.to_thread(_compute, rows, self.config)
            except Exception:
                # The rest of the snapshot (counters, coverage, estimates) is still worth publishing.
                logger.exception("computing performance failed; keeping the previous metrics")
        try:
            coverage: Coverage | None = await self.store.coverage(now - self.window.seconds, self.model)
        except StoreError as exc:
            logger.warning("label coverage is unavailable: %s", exc)
            coverage = previous.coverage
        estimated: dict[str, MetricResult] = {}
        if self.config.task == "classification":
            variants = self.confidence.variants() | {snapshot.variant for snapshot in performance}
            estimated = {variant: self.confidence.result(variant, now) for variant in sorted(variants)}
        snapshot = LabelsSnapshot(
            now,
            self.model,
            self.config.task,
            self.window.seconds,
            self.config.min_labels,
            performance,
            estimated,
            coverage,
            self.window.loaded,
            outcomes,
            delay,
        )
        drift = self.data.snapshot.drift
        self.retrainer.evaluate(
            snapshot.metrics_of(self.primary_variant),
            None if drift is None else drift.verdict,
            drifted_share=None if drift is None else drift.drifted_share,
            now=now,
        )
        # After the checks, so a trigger fired now shows in this snapshot.
        self.snapshot = replace(snapshot, retraining=self.retrainer.status(now))
        return self.snapshot

    async def run(self, interval: float) -> None:
        """Load the window, then publish a fresh snapshot every ``interval`` seconds until cancelled."""
        try:
            await self.load()
        except StoreError as exc:
            # Fail open: performance starts from the labels that arrive from now on.
            logger.warning("could not read labelled predictions back from the store: %s", exc)
        while True:
            try:
                await self.evaluate()
            except Exception:
                logger.exception("performance evaluation failed; keeping the previous snapshot")
            await asyncio.sleep(interval)


def _compute(labelled: Sequence[Labelled], config: PerformanceConfig) -> tuple[PerformanceSnapshot, ...]:
    rows = (
        JoinedRow(
            model=row.model,
            variant=row.variant,
            prediction=row.prediction,
            scores=row.scores,
            confidence=max(row.scores) if row.scores else None,
            label=row.label,
            weight=row.weight,
        )
        for row in labelled
    )
    return compute(rows, config)
