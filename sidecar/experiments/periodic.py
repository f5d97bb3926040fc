"""What the split and the shadow evaluators share: the window's start, the failures, and the loop.

:class:`Periodic` is the base of :class:`~.runner.ExperimentRunner` (split)
and :class:`~.shadow_runner.ShadowRunner` (shadow). It keeps the published
snapshot, reads the experiment's start from the store once
(:meth:`~sidecar.store.PredictionStore.experiment_started`: the first
replica's, kept across restarts), counts what kept the last snapshot in
place (:data:`FAILURES`: the store failed, or the evaluation raised), and
runs :meth:`Periodic.evaluate` every interval without ever raising: a
monitoring fault never stops the monitoring.

Usage::

    class Runner(Periodic[Snapshot]):
        async def evaluate(self) -> Snapshot | None:
            try:
                since = await self.started()
                ...
            except StoreError as exc:
                return self.store_failed(exc)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final, Generic, Literal, TypeVar, get_args

from sidecar.experiments.definition import Experiment
from sidecar.store import PredictionStore, StoreError

__all__ = ["FAILURES", "Failure", "Periodic"]

# Why an evaluation published nothing new: the store failed or could not be reached, or the evaluation raised.
Failure = Literal["store", "error"]
FAILURES: Final[tuple[Failure, ...]] = get_args(Failure)

S = TypeVar("S")


class Periodic(Generic[S]):
    """An experiment's evaluator: :meth:`evaluate` (the subclass's) every interval, one snapshot published.

    ``kind`` and ``result`` name it in the log (``experiment`` and ``analysis``, ``shadow`` and
    ``comparison``), through ``logger``.

    Usage::

        runner.snapshot          # None before the first evaluation
        runner.failures          # {"store": 0, "error": 0}
        await runner.run(60)     # until cancelled
    """

    def __init__(
        self,
        store: PredictionStore,
        experiment: Experiment,
        *,
        kind: str,
        result: str,
        logger: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.experiment = experiment
        self.clock = clock
        self.snapshot: S | None = None
        # When the experiment started, as the store recorded it (the first replica's start): read once.
        self.started_at: float | None = None
        self.failures: dict[Failure, int] = dict.fromkeys(FAILURES, 0)
        # This replica's start, offered to the store: the requests it serves from now on are the experiment's.
        self._ran_at = clock()
        self._kind, self._result, self._logger = kind, result, logger

    async def evaluate(self) -> S | None:
        """Read, evaluate off the loop and publish :attr:`snapshot`; the subclass's."""
        raise NotImplementedError

    async def started(self) -> float:
        """The experiment's start, from the store the first time; :class:`StoreError` if it cannot be read."""
        if self.started_at is None:
            self.started_at = await self.store.experiment_started(self.experiment.name, self._ran_at)
        return self.started_at

    def store_failed(self, exc: StoreError) -> S | None:
        """Count a store fault and keep the last snapshot, which is returned."""
        self.failures["store"] += 1
        self._logger.warning(
            "%s %s: the store could not be read; kept the last %s: %s",
            self._kind,
            self.experiment.name,
            self._result,
            exc,
        )
        return self.snapshot

    async def run(self, interval: float) -> None:
        """Evaluate now, then every ``interval`` seconds, until cancelled; never raises otherwise."""
        while True:
            try:
                await self.evaluate()
            except Exception:
                self.failures["error"] += 1
                self._logger.exception(
                    "%s %s: the %s failed; kept the last one", self._kind, self.experiment.name, self._result
                )
            await asyncio.sleep(interval)
