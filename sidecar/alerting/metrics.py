"""The alerting metrics, read at scrape time from the engine's state and the notifier's counts.

Label values come from the rules (configuration) and from fixed lists, never
from payloads: one ``mlsidecar_alert_active`` series per rule that applies to
this sidecar, from start-up on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, get_args

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.alerting.engine import AlertEngine
from sidecar.prometheus import PREFIX

__all__ = ["NOTIFY_OUTCOMES", "TARGETS", "AlertMetrics", "NotifyMetrics", "Outcome", "Target"]

Target = Literal["alertmanager", "webhook"]
TARGETS: Final[tuple[Target, ...]] = get_args(Target)
Outcome = Literal["delivered", "failed", "dropped"]
NOTIFY_OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)


class AlertMetrics(Collector):
    """``mlsidecar_alert_active{alert,severity}``: 1 while the alert fires, else 0.

    Usage::

        registry.register(AlertMetrics(engine))
    """

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            PREFIX + "alert_active",
            "1 while the alert is firing, else 0 (pending counts as 0).",
            labels=("alert", "severity"),
        )
        for alert in self.engine.alerts():
            family.add_metric((alert.name, alert.severity), 1.0 if alert.state == "firing" else 0.0)
        yield family


class NotifyMetrics(Collector):
    """``mlsidecar_alert_notifications_total{target,outcome}`` for the configured targets, every child from start-up.

    One notification is one alert sent to one target: a re-send counts again.
    """

    def __init__(self, targets: Iterable[Target]) -> None:
        self.counts: dict[tuple[Target, Outcome], int] = {(t, o): 0 for t in targets for o in NOTIFY_OUTCOMES}

    def add(self, target: Target, outcome: Outcome, n: int = 1) -> None:
        self.counts[target, outcome] += n

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            PREFIX + "alert_notifications_total",
            "Alert notifications: delivered, failed after retries, or dropped (queue full or shut down).",
            labels=("target", "outcome"),
        )
        for (target, outcome), n in self.counts.items():
            family.add_metric((target, outcome), n)
        yield family
