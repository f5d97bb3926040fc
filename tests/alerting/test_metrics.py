"""``mlsidecar_alert_active`` and ``mlsidecar_alert_notifications_total`` through a real registry."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import CollectorRegistry, generate_latest

from sidecar.alerting.conditions import parse
from sidecar.alerting.engine import AlertEngine
from sidecar.alerting.metrics import AlertMetrics, NotifyMetrics
from sidecar.alerting.rules import AlertRule, default_rules
from sidecar.alerting.signals import Signals

T0 = 1_780_000_000.0
ACTIVE = "mlsidecar_alert_active"


def test_one_series_per_rule_that_applies_from_start_up() -> None:
    rules = (*default_rules("https://r/"), AlertRule("fraud_only", parse("psi > 0.2"), "P3", model="fraud"))
    engine = AlertEngine(rules, model="iris")
    registry = CollectorRegistry()
    registry.register(AlertMetrics(engine))
    for rule in rules[:-1]:
        assert (
            registry.get_sample_value(ACTIVE, {"model": "iris", "alert": rule.name, "severity": rule.severity}) == 0.0
        )
    assert registry.get_sample_value(ACTIVE, {"model": "iris", "alert": "fraud_only", "severity": "P3"}) is None


def test_one_while_firing_zero_while_pending_or_resolved() -> None:
    engine = AlertEngine([AlertRule("errors", parse("error_rate > 0.5"), "P1", for_seconds=60)], model="iris")
    registry = CollectorRegistry()
    registry.register(AlertMetrics(engine))

    def active() -> float | None:
        return registry.get_sample_value(ACTIVE, {"model": "iris", "alert": "errors", "severity": "P1"})

    bad = Signals(values={"error_rate": 0.9})
    engine.evaluate(bad, T0)
    assert active() == 0.0  # pending
    engine.evaluate(bad, T0 + 60)
    assert active() == 1.0
    engine.evaluate(Signals(values={"error_rate": 0.0}), T0 + 120)
    assert active() == 0.0  # resolved
    # An event alert first recorded at run time gets its series then.
    engine.record_event("retraining_triggered", "P4", "drift", now=T0 + 130)
    assert (
        registry.get_sample_value(ACTIVE, {"model": "iris", "alert": "retraining_triggered", "severity": "P4"}) == 1.0
    )


def test_notification_counts_have_every_child_and_pass_promtool() -> None:
    metrics = NotifyMetrics("iris", ("alertmanager", "webhook"))
    metrics.series["webhook", "failed"].inc(2)
    registry = CollectorRegistry()
    registry.register(metrics.notifications)
    registry.register(AlertMetrics(AlertEngine(default_rules(""), model="iris")))
    name = "mlsidecar_alert_notifications_total"
    for target in ("alertmanager", "webhook"):
        for outcome in ("delivered", "failed", "dropped"):
            expected = 2.0 if (target, outcome) == ("webhook", "failed") else 0.0
            labels = {"model": "iris", "target": target, "outcome": outcome}
            assert registry.get_sample_value(name, labels) == expected
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (Debian package prometheus)"
    result = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry), capture_output=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b"", "promtool reported findings"
