"""The serving process's experiment counters: assignments per arm, and what became of each shadow mirror.

A collector over the plain counters the request path keeps (the
:class:`~.routing.Router`'s, the shadow queue's), rendered at
scrape time as the proxy's own metrics are: the request path pays no
prometheus-client lock. It lives in the serving process, beside the proxy,
and loads no statistics (the analysis metrics are :mod:`.metrics`'s, in the
monitoring process).

=======================================  ========================================================
``mlsidecar_experiment_units_total``     ``{model, experiment, variant}``: the assignments the
                                         router made, by unit and by coin together (split mode)
``mlsidecar_shadow_requests_total``      ``{model, experiment, outcome}``: mirrors to the
                                         challenger by outcome, every outcome from 0 (shadow mode;
                                         in process mode with the monitoring process's reports,
                                         :mod:`sidecar.plane.shadow`)
``mlsidecar_shadow_comparison_``         ``{model, experiment}``: the challenger's answers the
``dropped_total``                        capture hand-off had no spare room for, so the comparison
                                         never saw them (shadow mode, inline only: in process mode
                                         the answers reach the comparison without the hand-off;
                                         :mod:`.tap`)
=======================================  ========================================================

Label values come from the definition (the experiment, its variants) and
from the shadow's fixed list of outcomes.

Usage::

    registry.register(TrafficMetrics("iris", experiment, router=router))         # split mode
    registry.register(TrafficMetrics("iris", experiment, shadow=shadow, tap=tap))  # shadow mode, inline
    registry.register(TrafficMetrics("iris", experiment, shadow=remote))            # shadow mode, process mode
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.experiments.definition import Experiment
from sidecar.prometheus import PREFIX

if TYPE_CHECKING:
    from sidecar.experiments.routing import Router
    from sidecar.experiments.shadow import MirrorQueue
    from sidecar.experiments.tap import ShadowTap

__all__ = ["TrafficMetrics"]


class TrafficMetrics(Collector):
    """The experiment's serving-side families; a family whose counter is not given (``router`` in shadow mode,
    ``shadow`` and ``tap`` in split mode) is not exported.

    Usage::

        registry.register(TrafficMetrics("iris", experiment, router=router))
    """

    def __init__(
        self,
        model: str,
        experiment: Experiment,
        *,
        router: Router | None = None,
        shadow: MirrorQueue | None = None,
        tap: ShadowTap | None = None,
    ) -> None:
        self.model = model
        self.experiment = experiment
        self.router = router
        self.shadow = shadow
        self.tap = tap

    def collect(self) -> Iterable[Metric]:
        model, name = self.model, self.experiment.name
        router = self.router
        if router is not None:
            units = CounterMetricFamily(
                PREFIX + "experiment_units_total",
                "Requests the experiment's router assigned to each arm, by the unit's hash or, without a unit, by a "
                "coin; the requests the fallback model served are in no arm.",
                labels=("model", "experiment", "variant"),
            )
            for variant, keyed, randomised in zip(router.variants, router.keyed, router.randomised, strict=True):
                units.add_metric((model, name, variant.name), keyed + randomised)
            yield units
        shadow = self.shadow
        if shadow is not None:
            mirrors = CounterMetricFamily(
                PREFIX + "shadow_requests_total",
                "Requests mirrored to the shadow experiment's challenger, by outcome: sent, error (5xx or a failed "
                "exchange), timeout, dropped_queue_full, dropped_too_large, dropped_shutdown, dropped_restart, "
                "dropped_busy.",
                labels=("model", "experiment", "outcome"),
            )
            for outcome, n in shadow.totals().items():
                mirrors.add_metric((model, name, outcome), n)
            yield mirrors
        tap = self.tap
        if tap is not None:
            dropped = CounterMetricFamily(
                PREFIX + "shadow_comparison_dropped_total",
                "The shadow challenger's answers not handed to the comparison: the capture hand-off had no spare "
                "room (they take at most half of it, so that control's captures keep the rest).",
                labels=("model", "experiment"),
            )
            dropped.add_metric((model, name), tap.dropped)
            yield dropped
