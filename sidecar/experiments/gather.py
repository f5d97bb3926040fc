"""Reads what one analysis needs from the prediction store: the :class:`~.data.ExperimentData` of a window.

:func:`gather` asks the store for the arms' captured units (the sample ratio
on capture), each outcome metric's sums (summed by the database) and the
labelled rows (once, for every label metric), computes the label metrics'
per-row values (:mod:`.labelled`) and sums them (in a worker thread, as they
are Python work over every labelled row), and adds the proxy's counters the
caller passes: the router's :class:`~.data.Routing` and each arm's
:class:`~.data.Serving`.

Periods count from each unit's first exposure, or, without an assignment
key, are calendar periods from the window's first exposure. A metric's
outcomes are read **per unit** when they were all posted by unit, else
**per exposure** (:mod:`.data`).

Segments come from request headers or payloads, so their number is bounded
here: the :data:`MAX_SEGMENTS` with the most units keep their names, the
others are summed into :data:`OTHER_SEGMENT`, and requests without a value
are :data:`NO_SEGMENT`. They appear in the API's body only, never as label
values of a metric.

Usage::

    data = await gather(store, experiment, since=started_at, routing=Routing(tuple(router.keyed),
                        tuple(router.randomised)), serving=serving_per_arm, config=performance_config)
    snapshot = await asyncio.to_thread(analyse, experiment, data, now=time.time(), previous=snapshot)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import numpy as np

from sidecar.experiments.data import ExperimentData, MetricData, Routing, Serving
from sidecar.experiments.definition import Experiment, Metric
from sidecar.experiments.labelled import label_values
from sidecar.performance import PerformanceConfig
from sidecar.store import PredictionStore
from sidecar.store.experiment import LabelledExposures, UnitSums, unit_sums

__all__ = ["DAY", "MAX_SEGMENTS", "NO_SEGMENT", "OTHER_SEGMENT", "gather", "metric_data"]

DAY: Final = 86400.0
MAX_SEGMENTS: Final = 20
OTHER_SEGMENT: Final = "__other__"
NO_SEGMENT: Final = "__none__"


async def gather(
    store: PredictionStore,
    experiment: Experiment,
    *,
    since: float,
    routing: Routing,
    serving: Sequence[Serving],
    config: PerformanceConfig,
    model: str | None = None,
    period_seconds: float = DAY,
) -> ExperimentData:
    """The data of ``experiment`` over the predictions made at or after ``since``; :class:`StoreError` if the
    store cannot be read."""
    arms = tuple(v.name for v in experiment.variants)
    calendar = experiment.assignment.key is None
    units = await store.experiment_units(arms, since=since, model=model)
    metrics: dict[str, MetricData] = {}
    for metric in experiment.metrics.tested:
        if metric.source == "outcome":
            sums = await store.outcome_sums(
                experiment.name,
                metric.name,
                arms,
                since=since,
                period_seconds=period_seconds,
                calendar=calendar,
                model=model,
            )
            metrics[metric.name] = metric_data(sums, per_unit=sums.by_unit > 0 and sums.by_request == 0)
    labelled = [m for m in experiment.metrics.tested if m.source == "label"]
    if labelled:
        rows = await store.labelled_exposures(
            arms, since=since, period_seconds=period_seconds, calendar=calendar, model=model
        )
        metrics.update(await asyncio.to_thread(_label_data, rows, labelled, config))
    return ExperimentData(
        since=since,
        routing=routing,
        captured=tuple(int(keyed + alone) for keyed, alone in units.tolist()),
        serving=tuple(serving),
        metrics=metrics,
    )


def metric_data(sums: UnitSums, *, per_unit: bool) -> MetricData:
    """The store's sums as the analysis reads them, the segments named and bounded; see the module docstring."""
    named = {NO_SEGMENT if name is None else name: array for name, array in sums.segments.items()}
    # The most units first, then by name, so the segments kept do not change from one evaluation to the next
    # unless their units do.
    ranked = sorted(named, key=lambda name: (-float(named[name][:, 0].sum()), name))
    segments = {name: named[name].copy() for name in ranked[:MAX_SEGMENTS]}
    rest = [named[name] for name in ranked[MAX_SEGMENTS:]]
    if rest:
        folded = np.sum(rest, axis=0)
        segments[OTHER_SEGMENT] = segments[OTHER_SEGMENT] + folded if OTHER_SEGMENT in segments else folded
    return MetricData(sums.total, segments, sums.periods.copy(), per_unit)


def _label_data(rows: LabelledExposures, metrics: Sequence[Metric], config: PerformanceConfig) -> dict[str, MetricData]:
    return {
        metric.name: metric_data(
            unit_sums(rows, label_values(metric.name, rows.prediction, rows.scores, rows.label, config)),
            per_unit=False,
        )
        for metric in metrics
    }
