"""Labels in: check each for the task, join it to its stored prediction, and count what happened.

:class:`LabelIngest` takes the items of ``POST /api/v1/labels``, as
:mod:`sidecar.labels.api` parsed them:

- a label the task does not accept is ``invalid``, with a reason, and never
  reaches the store; the other items of the batch still join;
- the valid ones are joined in one store transaction, each ``joined``,
  ``unmatched`` or ``duplicate``;
- every outcome is counted, and every joined label's delay (seconds from its
  prediction) is counted into the :data:`~sidecar.labels.snapshot.DELAY_BUCKETS`;
  ``/metrics`` reads these counters, and each evaluation copies them into its
  snapshot;
- the joined rows go to the :class:`~sidecar.labels.window.LabelledWindow`,
  and, at arrival, to label drift (class balance against the profile's
  target), label freshness and the retrainer's count of new labels.

With the shared store (the store's ``shared``), the window and the
retrainer's count are the leader's, read from the whole fleet's rows
(:mod:`sidecar.labels.evaluate`), so the joined rows go to neither here: the
counters, delays, label drift and freshness stay this replica's own.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

from sidecar.labels.retraining import Retrainer
from sidecar.labels.snapshot import DELAY_BUCKETS, DelayHistogram
from sidecar.labels.window import LabelledWindow
from sidecar.monitoring.evaluator import DataMonitors
from sidecar.performance import PerformanceConfig, validate_label
from sidecar.store import OUTCOMES, LabelItem, Labelled, Outcome, PredictionStore

__all__ = ["LabelIngest"]


class LabelIngest:
    """Validates and joins delayed labels, and counts their outcomes and delays.

    Usage::

        ingest = LabelIngest(store, config, window, model="iris", retrainer=retrainer, data=monitors)
        outcomes = await ingest.ingest(items)   # one Outcome per item, in order
        ingest.outcomes["joined"], ingest.delay_histogram().count
    """

    def __init__(
        self,
        store: PredictionStore,
        config: PerformanceConfig,
        window: LabelledWindow,
        *,
        model: str,
        retrainer: Retrainer,
        data: DataMonitors,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.window = window
        self.model = model
        self.retrainer = retrainer
        self.data = data
        self.clock = clock
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        # Per bucket, the last one beyond every bound; delay_histogram() makes them cumulative.
        self._delays = [0] * (len(DELAY_BUCKETS) + 1)
        self._delay_sum = 0.0

    async def ingest(self, items: Sequence[LabelItem]) -> list[Outcome]:
        """Check each label for the task, join the valid ones, and count every outcome.

        Raises :class:`~sidecar.store.StoreError` when SQLite refuses the batch;
        then nothing of it was stored and nothing is counted but the failure.
        """
        outcomes: list[Outcome | None] = [None] * len(items)
        valid: list[LabelItem] = []
        positions: list[int] = []
        for i, item in enumerate(items):
            ok, reason = validate_label(self.config.task, item.label, classes=self.config.classes)
            if ok:
                valid.append(item)
                positions.append(i)
            else:
                outcomes[i] = Outcome("invalid", reason=reason)
        joined = await self.store.attach_labels(valid) if valid else []
        for i, outcome in zip(positions, joined, strict=True):
            outcomes[i] = outcome
        done = [outcome for outcome in outcomes if outcome is not None]
        self._account(done)
        return done

    def delay_histogram(self) -> DelayHistogram:
        """The label delays counted so far, cumulative per bound."""
        return DelayHistogram.of(self._delays, self._delay_sum)

    def _account(self, outcomes: Sequence[Outcome]) -> None:
        now = self.clock()
        joined: list[Labelled] = []
        for outcome in outcomes:
            self.outcomes[outcome.kind] += 1
            if outcome.joined is not None:
                joined.append(outcome.joined)
        if not joined:
            return
        for row in joined:
            delay = max(0.0, row.delay)
            # The first bound at or above the delay: each bucket holds delays <= its bound, as Prometheus' "le".
            self._delays[bisect.bisect_left(DELAY_BUCKETS, delay)] += 1
            self._delay_sum += delay
        if not self.store.shared:
            self.window.add(joined)
            self.retrainer.observe_labels(len(joined))
        self.data.quality.observe_label_time(now)
        tracker = self.data.tracker
        if tracker is not None:
            # Label drift is about the labels arriving now, so they count at arrival.
            tracker.update_labels([(row.label, row.weight) for row in joined if row.model == self.model])
