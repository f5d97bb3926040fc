"""The alerting wiring: signals read from the sidecar's own state, and the hooks back into serving.

The components are the real ones, built from settings as the server builds
them, but not started: the tests move the proxy counters and the clock by hand.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.alerting.source import histogram_quantile
from sidecar.assembly import Alerting, build_alerting, build_components
from sidecar.config import Settings
from sidecar.labels.retraining import Trigger
from sidecar.serving.flags import Flags
from sidecar.serving.metrics import LATENCY_BUCKETS, ProxyMetrics

pytestmark = pytest.mark.anyio


def wired(tmp_path: Path, **env: str) -> tuple[Alerting, ProxyMetrics, Flags]:
    settings = Settings.from_env(
        {
            "SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9",
            "SIDECAR_STATE_DIR": str(tmp_path),
            "SIDECAR_LOG_SINK": "none",
            "SIDECAR_ALERT_RATE_WINDOW_SECONDS": "60",
            "SIDECAR_ALERT_MIN_REQUESTS": "10",
            **env,
        }
    )
    parts = build_components(settings)
    metrics = ProxyMetrics(settings.model_name, ("primary", "fallback"))
    flags = Flags(fallback_available=True)
    return build_alerting(settings, parts, metrics, flags, "primary"), metrics, flags


def serve(metrics: ProxyMetrics, status: int, n: int, seconds: float = 0.004) -> None:
    route = metrics.routes["primary"]
    for _ in range(n):
        metrics.record(route, status, seconds, None, 0, 0)


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[LATENCY_BUCKETS.index(0.005)] = 100  # all in (0.0025, 0.005]
    assert histogram_quantile(0.99, counts) == pytest.approx(0.0025 + 0.0025 * 0.99)
    assert histogram_quantile(0.5, counts) == pytest.approx(0.00375)
    counts[-1] = 1_000  # most beyond the last bound: the largest finite bound, as Prometheus says
    assert histogram_quantile(0.99, counts) == LATENCY_BUCKETS[-1]
    assert histogram_quantile(0.99, [0] * len(counts)) is None


async def test_error_rate_and_p99_over_the_window_only(tmp_path: Path) -> None:
    alerting, metrics, _ = wired(tmp_path)
    source = alerting.runner.source
    assert source.build(now=1000.0).values["error_rate"] is None  # no traffic: no evidence
    serve(metrics, 200, 90)
    serve(metrics, 503, 10)
    signals = source.build(now=1010.0)
    assert signals.values["error_rate"] == pytest.approx(0.1)
    assert signals.values["p99_latency_seconds"] == pytest.approx(0.0025 + 0.0025 * 0.99)
    # Seventy seconds on, the window holds only what came since: all errors now.
    serve(metrics, 502, 20)
    assert source.build(now=1080.0).values["error_rate"] == pytest.approx(20 / 20)
    # Too few requests in the window is insufficient data, not a rate of 0.
    serve(metrics, 500, 5)
    assert source.build(now=1200.0).values["error_rate"] is None
    # Neither drift nor labels yet: their signals are unknown, never zero.
    values = source.build(now=1201.0).values
    assert values["accuracy"] is None and values["accuracy_drop"] is None and values["prediction_psi"] is None


async def test_a_p1_error_alert_sets_the_fallback_flag_and_arms_trigger_sampling(tmp_path: Path) -> None:
    alerting, metrics, flags = wired(tmp_path, SIDECAR_AUTO_FALLBACK="true", SIDECAR_FALLBACK_URL="http://127.0.0.1:9",
                                     SIDECAR_SAMPLING="trigger", SIDECAR_SAMPLE_RATE="0.01")  # fmt: skip
    runner = alerting.runner
    serve(metrics, 200, 10)
    runner.evaluate(now=1000.0)
    serve(metrics, 500, 40)
    runner.evaluate(now=1010.0)  # error_rate 0.8: pending, since the default waits 1m
    assert not flags.use_fallback_model
    serve(metrics, 500, 40)
    transitions = runner.evaluate(now=1071.0)
    assert [(t.alert.name, t.state) for t in transitions] == [("serving_errors_high", "firing")]
    assert flags.use_fallback_model
    assert flags.changes["use_fallback_model"].source == "alert:serving_errors_high"
    assert runner.sampler.active_reason == "alert:serving_errors_high"
    # An operator clears it; the alert firing on does not set it again.
    flags.set("use_fallback_model", False, source="api")
    serve(metrics, 500, 40)
    runner.evaluate(now=1080.0)
    assert not flags.use_fallback_model


async def test_without_auto_fallback_the_flag_stays_put(tmp_path: Path) -> None:
    alerting, metrics, flags = wired(tmp_path, SIDECAR_FALLBACK_URL="http://127.0.0.1:9")
    for now in (1000.0, 1010.0, 1071.0, 1132.0):
        serve(metrics, 500, 40)
        alerting.runner.evaluate(now=now)
    assert alerting.engine.firing()[0].name == "serving_errors_high"
    assert not flags.use_fallback_model


async def test_a_retraining_trigger_becomes_a_p4_event_alert(tmp_path: Path) -> None:
    alerting, _, _ = wired(tmp_path)
    trigger = Trigger("model", "drift", {"drifted_share": 0.5}, 1000.0)
    alerting.runner.retraining_triggered(trigger)
    (alert,) = alerting.engine.firing()
    assert (alert.name, alert.severity, alert.state) == ("retraining_triggered", "P4", "firing")
    assert alert.context is not None and alert.context["reason"] == "drift"
    assert not math.isnan(alert.since)


def test_bad_rules_stop_start_up_naming_the_rule_and_position(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text("alerts:\n  - name: x\n    condition: psi >> 0.2\n    severity: P3\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")},
        "SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9",
        "SIDECAR_ALERT_RULES": str(rules),
        "SIDECAR_STATE_DIR": str(tmp_path / "state"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert f"SIDECAR_ALERT_RULES: {rules}: rule 'x': condition 'psi >> 0.2': unexpected '>' at position 5" in (
        result.stderr
    )
