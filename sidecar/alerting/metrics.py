"""The alerting metrics: the alerts' states, read at scrape time from the engine, and the notifier's counter.

Label values come from the rules (configuration) and from fixed lists, never
from payloads: one ``mlsidecar_alert_active`` series per rule that applies to
this sidecar, from start-up on. ``model`` comes first in both families, as in
every ``mlsidecar_*`` family.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, get_args

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.alerting.engine import AlertEngine
from sidecar.prometheus import PREFIX, counter

__all__ = ["NOTIFY_OUTCOMES", "TARGETS", "AlertMetrics", "NotifyMetrics", "Outcome", "Target"]

Target = Literal["alertmanager", "webhook"]
TARGETS: Final[tuple[Target, ...]] = get_args(Target)
Outcome = Literal["delivered", "failed", "dropped"]
NOTIFY_OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)


class AlertMetrics(Collector):
    """``mlsidecar_alert_active{model,alert,severity}``: 1 while the alert fires, else 0.

    A collector rather than a prometheus-client gauge: the engine owns the
    alerts' states and this reads them, so the two never disagree, and an
    event alert first recorded at run time gets its series then.

    Usage::

        registry.register(AlertMetrics(engine))
    """

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            PREFIX + "alert_active",
            "1 while the alert is firing, else 0 (pending counts as 0).",
            labels=("model", "alert", "severity"),
        )
        model = self.engine.model
        for alert in self.engine.alerts():
            family.add_metric((model, alert.name, alert.severity), 1.0 if alert.state == "firing" else 0.0)
        yield family


class NotifyMetrics:
    """``mlsidecar_alert_notifications_total{model,target,outcome}``, a prometheus-client counter.

    Every child of the configured targets is bound at start-up. One
    notification is one alert sent to one target: a re-send counts again.
    The owner of the registry (the assembly) registers :attr:`notifications`.

    Usage::

        metrics = NotifyMetrics("iris", ("alertmanager",))
        registry.register(metrics.notifications)
        metrics.series["alertmanager", "delivered"].inc(3)
    """

    def __init__(self, model: str, targets: Iterable[Target]) -> None:
        self.notifications = counter(
            "alert_notifications_total",
            "Alert notifications: delivered, failed after retries, or dropped (queue full or shut down).",
            ("model", "target", "outcome"),
        )
        self.series = {(t, o): self.notifications.labels(model, t, o) for t in targets for o in NOTIFY_OUTCOMES}
