"""The experiment's evaluator: every interval, one immutable :class:`~.snapshot.ExperimentSnapshot`.

:class:`ExperimentRunner` runs beside the performance evaluator, in the
monitoring process. Each evaluation

1. reads the experiment's start from the store, once
   (:meth:`~sidecar.store.PredictionStore.experiment_started`): the window
   starts when the experiment first ran, on any replica sharing the store,
   and stays there across restarts, so its sequential results keep one
   sample that only grows;
2. asks the store for the window's per-arm sums (:func:`~.gather.gather`,
   about a second at 200,000 predictions, which is why the interval is a
   minute by default), with the router's requests per arm and each arm's
   serving signals, from callables the wiring gives, since in process mode
   both come from the serving process through the mirror;
3. analyses them on a worker thread (:func:`~.analysis.analyse`), with the
   previous snapshot for the sequential running intervals;
4. publishes the new snapshot in :attr:`ExperimentRunner.snapshot`, which
   ``GET /api/v1/experiments``, the metrics and the ``experiment_decision``
   alert signal read.

**Fail open.** A store that fails or cannot be reached leaves the last
snapshot in place, counted in :attr:`ExperimentRunner.failures` (``store``),
and the next interval tries again; an analysis that raises (a bug) is counted
(``error``) and logged with its traceback. Nothing raises out of
:meth:`ExperimentRunner.run`. Before the first evaluation the snapshot is None.

**Every replica evaluates.** With the shared store the window's sums are the
fleet's, the same on every replica; the routing counts and serving signals
are each replica's own. So each replica publishes its own snapshot, and a
dashboard or alert takes one series per model and experiment
(``max without (instance, pod)``).

:func:`serving_of` turns the proxy's counters (:class:`~sidecar.serving.metrics.ServingCounts`,
or its mirror) into each arm's :class:`~.data.Serving`: its requests, its 5xx
share, and its p95 latency interpolated in the request-duration buckets as
Prometheus' ``histogram_quantile`` does, all since the serving process started.

Usage::

    runner = ExperimentRunner(store, experiment, performance_config, model="iris",
                              routing=lambda: Routing(tuple(router.keyed), tuple(router.randomised)),
                              serving=lambda: serving_of(proxy_metrics, [v.name for v in experiment.variants]))
    task = asyncio.create_task(runner.run(interval=60))
    runner.snapshot                  # None, then the latest analysis
    runner.decision()                # "keep_running", ...: the alert signal experiment_decision
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sidecar.alerting.source import histogram_quantile
from sidecar.experiments.data import Routing, Serving
from sidecar.experiments.definition import Experiment
from sidecar.experiments.gather import DAY, gather
from sidecar.experiments.periodic import Periodic
from sidecar.performance import PerformanceConfig
from sidecar.serving.metrics import ServingCounts
from sidecar.store import PredictionStore, StoreError

if TYPE_CHECKING:
    from sidecar.experiments.snapshot import ExperimentSnapshot

__all__ = ["ExperimentRunner", "serving_of"]

logger = logging.getLogger("sidecar.experiments.runner")


class ExperimentRunner(Periodic["ExperimentSnapshot"]):
    """Evaluates a split experiment every interval and publishes :attr:`snapshot`; see the module docstring.

    ``routing`` gives the router's requests per arm (None while they are not
    known yet, as before the first mirror update: zero then); ``serving``
    each arm's :class:`~.data.Serving`, in the definition's order. ``model``
    narrows the store's rows to one model's (a database several models share).
    A shadow experiment has no arms to compare by: ``ValueError``.

    Usage::

        runner = ExperimentRunner(store, experiment, config, routing=lambda: None, serving=serving)
        snapshot = await runner.evaluate()     # also what run() does every interval
        runner.failures                        # {"store": 0, "error": 0}
    """

    def __init__(
        self,
        store: PredictionStore,
        experiment: Experiment,
        config: PerformanceConfig,
        *,
        routing: Callable[[], Routing | None],
        serving: Callable[[], Sequence[Serving]],
        model: str | None = None,
        period_seconds: float = DAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if experiment.mode != "split":
            raise ValueError(f"experiment {experiment.name!r} is a shadow experiment: its arms are paired, not split")
        super().__init__(store, experiment, kind="experiment", result="analysis", logger=logger, clock=clock)
        self.config = config
        self.routing = routing
        self.serving = serving
        self.model = model
        self.period_seconds = period_seconds

    def decision(self) -> str | None:
        """The experiment's current decision (``invalid``, ``revert``, ...), None before the first evaluation."""
        snapshot = self.snapshot
        return None if snapshot is None else snapshot.decision.decision.decision

    async def evaluate(self) -> ExperimentSnapshot | None:
        """Gather, analyse off the loop and publish; on a store fault, count it and keep the last snapshot."""
        # Imported here, not at the top: scipy.stats costs a process about 70 MiB, and the serving process,
        # which builds the same components, never analyses.
        from sidecar.experiments.analysis import analyse

        experiment = self.experiment
        arms = len(experiment.variants)
        try:
            since = await self.started()
            routing = self.routing() or Routing((0,) * arms, (0,) * arms)
            data = await gather(
                self.store,
                experiment,
                since=since,
                routing=routing,
                serving=self.serving(),
                config=self.config,
                model=self.model,
                period_seconds=self.period_seconds,
            )
        except StoreError as exc:
            return self.store_failed(exc)
        # Summing and testing every metric and segment is numpy and scipy work: off the loop.
        self.snapshot = await asyncio.to_thread(analyse, experiment, data, now=self.clock(), previous=self.snapshot)
        return self.snapshot


def serving_of(counts: ServingCounts, variants: Sequence[str]) -> tuple[Serving, ...]:
    """Each arm's :class:`~.data.Serving` from the proxy's counters, in the order of ``variants``.

    The error rate is the 5xx share of the arm's requests (the proxy's own 502
    and 504 included), the p95 latency in milliseconds; both NaN for an arm
    without requests.
    """
    servings: list[Serving] = []
    for variant in variants:
        route = counts.routes.get(variant)
        if route is None:
            servings.append(Serving(0, math.nan, math.nan))
            continue
        codes = route.codes
        requests = sum(codes.values())
        errors = sum(n for code, n in codes.items() if code >= 500)
        p95 = histogram_quantile(0.95, route.duration.counts)
        servings.append(
            Serving(
                requests,
                errors / requests if requests else math.nan,
                math.nan if p95 is None else p95 * 1000.0,
            )
        )
    return tuple(servings)
