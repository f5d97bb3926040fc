"""A shadow experiment's evaluator: every interval, one immutable :class:`~.shadow_snapshot.ShadowSnapshot`.

:class:`ShadowRunner` is :class:`~.runner.ExperimentRunner`'s counterpart
for ``mode: shadow``, in the monitoring process. Each evaluation

1. reads the experiment's start from the store, once
   (:meth:`~sidecar.store.PredictionStore.experiment_started`: the first
   replica's, kept across restarts);
2. asks the store for the pairs since then
   (:meth:`~sidecar.store.PredictionStore.shadow_pairs`: every challenger
   row with control's prediction and label, the fleet's with PostgreSQL),
   with control's serving signals (a callable the wiring gives, since in
   process mode they come from the serving process through the mirror) and
   the challenger's, from its answers (:class:`~.pairing.ShadowPairing`,
   this process's);
3. compares them on a worker thread (:func:`~.shadow_analysis.analyse_shadow`);
4. publishes the new snapshot in :attr:`ShadowRunner.snapshot`, which
   ``GET /api/v1/experiments`` (its ``shadow`` section) and the
   ``mlsidecar_shadow_*`` metrics read.

Fail open as the split runner is: a store that fails keeps the last snapshot,
counted in :attr:`ShadowRunner.failures` (``store``); an analysis that raises
is counted (``error``) and logged; nothing raises out of :meth:`ShadowRunner.run`.

Usage::

    runner = ShadowRunner(store, experiment, performance_config, pairing=pairing, model="iris",
                          serving=lambda: serving_of(proxy_metrics, [experiment.control.name])[0])
    task = asyncio.create_task(runner.run(interval=60))
    runner.snapshot                  # None, then the latest comparison
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sidecar.experiments.data import Serving
from sidecar.experiments.definition import Experiment
from sidecar.experiments.pairing import ShadowPairing
from sidecar.experiments.periodic import Periodic
from sidecar.performance import PerformanceConfig
from sidecar.store import PredictionStore, StoreError

if TYPE_CHECKING:
    from sidecar.experiments.shadow_snapshot import ShadowSnapshot

__all__ = ["ShadowRunner"]

logger = logging.getLogger("sidecar.experiments.shadow_runner")

# SIDECAR_DRIFT_MIN_SAMPLES's default: the fewest predictions a side for the PSI between the two.
_MIN_SAMPLES = 200


class ShadowRunner(Periodic["ShadowSnapshot"]):
    """Compares a shadow experiment's two models every interval and publishes :attr:`snapshot`; see the module
    docstring.

    ``serving`` gives control's :class:`~.data.Serving` (the proxy's counters
    of the control variant); ``pairing`` is the one the capture worker feeds;
    ``min_samples`` and ``bins`` are the PSI's (``SIDECAR_DRIFT_MIN_SAMPLES``,
    ``SIDECAR_DRIFT_BINS``); ``model`` narrows the store's rows to one
    model's. A split experiment has no challenger's answers: ``ValueError``.

    Usage::

        runner = ShadowRunner(store, experiment, config, pairing=pairing, serving=lambda: control_serving)
        snapshot = await runner.evaluate()     # also what run() does every interval
    """

    def __init__(
        self,
        store: PredictionStore,
        experiment: Experiment,
        config: PerformanceConfig,
        *,
        pairing: ShadowPairing,
        serving: Callable[[], Serving],
        model: str | None = None,
        min_samples: int = _MIN_SAMPLES,
        bins: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if experiment.mode != "shadow":
            raise ValueError(f"experiment {experiment.name!r} splits its traffic: its arms are split, not paired")
        super().__init__(store, experiment, kind="shadow", result="comparison", logger=logger, clock=clock)
        self.config = config
        self.pairing = pairing
        self.serving = serving
        self.model = model
        self.min_samples = min_samples
        self.bins = bins

    async def evaluate(self) -> ShadowSnapshot | None:
        """Read the pairs, compare them off the loop and publish; on a store fault, count it and keep the last."""
        # Imported here, not at the top: the statistics load scipy, which the serving process must not.
        from sidecar.experiments.shadow_analysis import analyse_shadow

        experiment = self.experiment
        try:
            since = await self.started()
            pairs = await self.store.shadow_pairs(
                experiment.name, control=experiment.control.name, since=since, model=self.model
            )
        except StoreError as exc:
            return self.store_failed(exc)
        pairing = self.pairing
        self.snapshot = await asyncio.to_thread(
            analyse_shadow,
            experiment,
            pairs,
            control=self.serving(),
            challenger=pairing.serving(),
            answers=dict(pairing.fates),
            config=self.config,
            now=self.clock(),
            since=since,
            min_samples=self.min_samples,
            bins=self.bins,
        )
        return self.snapshot
