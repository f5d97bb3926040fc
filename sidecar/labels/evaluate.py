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

**The fleet** (``fleet=True``: the store is PostgreSQL, shared by every
replica). A replica's own labels and captures are then a part of the whole,
and a fleet's AUC is not a sum of replicas' AUCs, so one replica, the
store's leader (:attr:`~sidecar.store.PredictionStore.is_leader`), computes
everything over the whole fleet's rows: realised metrics from the stored
labelled rows, re-read only when the store's label marker moved; coverage and
the estimated accuracy from the stored predictions; and the retraining
checks, which fire once for the fleet. The others publish no fleet figure
(``leader`` False in the snapshot), so Prometheus sees one series per model,
whichever replica holds the lock. The label counters and delays stay each
replica's own: counters add up across replicas.
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
from sidecar.performance.estimate import ConfidenceWindow, window_estimate
from sidecar.records import PredictionRecord
from sidecar.store import Coverage, Labelled, PredictionStore, StoreError

__all__ = ["PerformanceEvaluator"]

logger = logging.getLogger("sidecar.labels.evaluate")

_LEADERSHIP_POLL_SECONDS = 0.1


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
        fleet: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.fleet = fleet
        # The fleet's label marker when its rows were last read, and its labelled count for the retrainer.
        self._marker: tuple[int, int] | None = None
        self._fleet_labelled: int | None = None
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
            now,
            model,
            config.task,
            window.seconds,
            config.min_labels,
            retraining=retrainer.status(now),
            leader=False if fleet else None,
        )

    def observe(self, records: Sequence[PredictionRecord]) -> None:
        """The capture subscriber: count each prediction's confidence. O(rows), never raises on a record."""
        if self.config.task != "classification" or self.fleet:
            return  # the fleet's estimate is read from the store, over every replica's predictions
        add = self.confidence.add
        # The time they are counted, not their own: the buckets then stay in order when
        # a slow request's record arrives after faster, later ones.
        now = self.clock()
        for record in records:
            add(record.variant, record.confidence, record.weight, now)

    async def load(self) -> None:
        """Read the labelled window back from the store, so a restart keeps the performance it had."""
        if self.fleet:
            return  # the leader reads the fleet's rows at each evaluation
        self.window.load(await self.store.labelled(self.clock() - self.window.seconds, self.model))

    async def evaluate(self) -> LabelsSnapshot:
        """Recompute what changed, run the retraining checks, then publish and return the snapshot."""
        if self.fleet:
            return await self._evaluate_fleet()
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
        return self._publish(snapshot, now)

    async def _evaluate_fleet(self) -> LabelsSnapshot:
        """The leader's evaluation over the whole fleet's rows; a snapshot with no fleet figure elsewhere."""
        now = self.clock()
        previous = self.snapshot
        outcomes, delay = dict(self.ingest.outcomes), self.ingest.delay_histogram()
        common = (now, self.model, self.config.task, self.window.seconds, self.config.min_labels)
        if not self.store.is_leader:
            # Forget what was read: when this replica leads again, it reads the rows afresh.
            self._marker = self._fleet_labelled = None
            self.snapshot = LabelsSnapshot(*common, outcomes=outcomes, delay=delay, leader=False)
            return self.snapshot
        since = now - self.window.seconds
        performance, coverage, estimated = previous.performance, previous.coverage, dict(previous.estimated)
        try:
            marker = await self.store.label_marker(since, self.model)
            if marker != self._marker:
                rows = await self.store.labelled(since, self.model)
                performance = await asyncio.to_thread(_compute, rows, self.config)
                self._marker = marker
            coverage = await self.store.coverage(since, self.model)
            if self.config.task == "classification":
                sums = await self.store.estimated(since, self.model)
                estimated = {variant: window_estimate(*sums[variant]) for variant in sorted(sums)}
        except StoreError as exc:
            # Fail open: the last figures stand until the store answers again.
            logger.warning("fleet performance is unavailable: %s", exc)
        if coverage is not None:
            # New labels for the retrainer: the rise in the fleet's labelled rows of the window, not this
            # replica's joins. Rows ageing out of the window make it an undercount, never a double count.
            if self._fleet_labelled is not None:
                self.retrainer.observe_labels(max(0, coverage.labelled - self._fleet_labelled))
            self._fleet_labelled = coverage.labelled
        snapshot = LabelsSnapshot(*common, performance, estimated, coverage, True, outcomes, delay, leader=True)
        return self._publish(snapshot, now)

    def _publish(self, snapshot: LabelsSnapshot, now: float) -> LabelsSnapshot:
        """Run the retraining checks on ``snapshot``'s primary metrics, then publish it with their status."""
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
            await self._wait(interval)

    async def _wait(self, interval: float) -> None:
        """Sleep ``interval``; with the shared store, evaluate at once when this replica's leadership changes.

        The store's lock round and this loop share the period, and the round tends to come
        just after an evaluation: waiting the full interval would make a new leader publish
        nearly two intervals after the old one died. A flag read every tenth of a second costs nothing.
        """
        if not self.fleet:
            await asyncio.sleep(interval)
            return
        loop = asyncio.get_running_loop()
        deadline, leading = loop.time() + interval, self.store.is_leader
        while (left := deadline - loop.time()) > 0 and self.store.is_leader == leading:
            await asyncio.sleep(min(left, _LEADERSHIP_POLL_SECONDS))


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
