"""The deploy/ alerting path end to end: sidecar → Prometheus (deploy rules) → Alertmanager (deploy routes).

A real sidecar with a reference profile serves a real (in-process) model; the real Prometheus
scrapes its admin ``/metrics`` every second and evaluates ``deploy/prometheus``'s recording and
alerting rules; the real Alertmanager runs ``deploy/alertmanager/alertmanager.yml``. Traffic
with one feature shifted by two standard deviations must reach Alertmanager as
``feature_drift``, routed to ``tickets``.

The rules run with test-sized durations: :func:`~tests.integration.stack.shortened_rules`
rewrites every range window to ``[1m]``, every ``for:`` to ``1s`` and every group interval to
``1s``, and changes nothing else (expressions, thresholds, the 200-observation guard, labels,
annotations). The receivers are made local webhooks by
:func:`~tests.integration.stack.hermetic_alertmanager_config`; the routes and inhibition are
the deploy file's.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from tests.alerting.test_rules import GUIDE
from tests.http import raw_request
from tests.integration.stack import (
    ALERTING_RULES,
    RECORDING_RULES,
    Alertmanager,
    Prometheus,
    WebhookReceiver,
    eventually,
    run_prometheus,
    shortened_rules,
)
from tests.servers import read_body, run_server, run_sidecar

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

Scope = dict[str, Any]
MODEL = "credit"
COUNTRIES = ("DE", "FR", "US")
COUNTRY_SHARES = (0.5, 0.3, 0.2)
DEADLINE = 60.0  # seconds for the alert to travel; it takes about 5


async def scorer(scope: Scope, receive: Any, send: Any) -> None:
    """A KServe V1 model: P(positive) = sigmoid(income / 10 − 5) for each instance."""
    instances = orjson.loads(await read_body(receive))["instances"]
    predictions = []
    for row in instances:
        p = 1 / (1 + math.exp(-(float(row["income"]) / 10 - 5)))
        predictions.append([1 - p, p])
    payload = orjson.dumps({"predictions": predictions})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def rows(n: int, seed: int, *, income_shift: float = 0.0) -> list[dict[str, Any]]:
    """``income`` ~ N(50 + 10·shift, 10); ``country`` always in the reference's shares."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50.0 + 10.0 * income_shift, 10.0, n)
    country = rng.choice(COUNTRIES, size=n, p=COUNTRY_SHARES)
    return [{"income": round(float(i), 3), "country": str(c)} for i, c in zip(income, country, strict=True)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference profile built by the CLI from 5,000 unshifted rows."""
    directory = tmp_path_factory.mktemp("reference")
    data, output = directory / "train.csv", directory / "reference.json"
    with data.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["income", "country"])
        writer.writeheader()
        writer.writerows(rows(5000, seed=1))
    command = [sys.executable, "-m", "sidecar", "profile", "build", str(data), "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return output


def sidecar_env(reference: Path) -> dict[str, str]:
    """A sidecar that judges drift within seconds; its per-bin counters are what Prometheus reads."""
    return {
        "SIDECAR_MODEL_NAME": MODEL,
        "SIDECAR_REFERENCE_PATH": str(reference),
        "SIDECAR_LOG_SINK": "none",
        "SIDECAR_EVAL_INTERVAL_SECONDS": "0.2",
        "SIDECAR_DRIFT_WINDOW_SECONDS": "60",
        "SIDECAR_DRIFT_SLICE_SECONDS": "5",
        "SIDECAR_DRIFT_MIN_SAMPLES": "100",
    }


async def send(proxy_port: int, batch: list[dict[str, Any]], size: int = 50) -> None:
    for start in range(0, len(batch), size):
        body = orjson.dumps({"instances": batch[start : start + size]})
        response = await raw_request(proxy_port, "POST", f"/v1/models/{MODEL}:predict", body=body)
        assert response.status == 200, response


async def test_feature_drift_reaches_alertmanager_through_the_deploy_rules(
    tmp_path: Path, reference: Path, alertmanager: Alertmanager, webhook: WebhookReceiver
) -> None:
    rule_files = [
        shortened_rules(RECORDING_RULES, tmp_path / "recording_rules.yml"),
        shortened_rules(ALERTING_RULES, tmp_path / "alerting_rules.yml"),
    ]
    async with (
        run_server(scorer) as model_port,
        run_sidecar(f"http://127.0.0.1:{model_port}", sidecar_env(reference)) as sidecar,
        run_prometheus(
            tmp_path / "prometheus",
            targets=[f"127.0.0.1:{sidecar.admin_port}"],
            rule_files=rule_files,
            alertmanager=alertmanager,
        ) as prometheus,
    ):
        # The rules read increases: Prometheus must see the bin counters at 0 before traffic.
        income_bins = f'mlsidecar_feature_bin_observations_total{{model="{MODEL}",feature="income"}}'
        before = await eventually(
            lambda: prometheus.query(income_bins), timeout=DEADLINE, what="Prometheus scraped the sidecar"
        )
        assert {float(sample["value"][1]) for sample in before} == {0.0}

        await send(sidecar.proxy_port, rows(600, seed=2, income_shift=2.0))

        try:
            firing = await eventually(
                lambda: alertmanager.alerts(alertname="feature_drift"),
                timeout=DEADLINE,
                what="feature_drift active in Alertmanager",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{await _diagnose(prometheus, alertmanager)}") from None

        (alert,) = firing
        assert alert["labels"] == {
            "alertname": "feature_drift",
            "severity": "P3",
            "model": MODEL,
            "feature": "income",
        }
        assert alert["status"]["state"] == "active"
        assert [receiver["name"] for receiver in alert["receivers"]] == ["tickets"]
        assert alert["annotations"]["runbook_url"] == "deploy/runbooks/feature_drift.md"
        assert alert["annotations"]["summary"].startswith(f"{MODEL}/income: fleet PSI ")

        # Routed, grouped and delivered: the tickets webhook gets the notification.
        notifications = await eventually(
            lambda: _delivered(webhook, "tickets", "feature_drift"),
            timeout=DEADLINE,
            what="the tickets receiver notified of feature_drift",
        )
        assert notifications[0]["commonLabels"]["model"] == MODEL
        assert not webhook.notifications("paging") and not webhook.notifications("chat")

        # The fleet PSI agrees with the sidecar's own verdict: income drifted, country did not.
        (fleet,) = await prometheus.query('model_feature:mlsidecar_feature_psi:fleet1h{feature="income"}')
        (own,) = await prometheus.query('mlsidecar_feature_drift_score{feature="income",method="psi"}')
        assert float(fleet["value"][1]) > 0.2 and float(own["value"][1]) > 0.2
        country = await prometheus.query('model_feature:mlsidecar_feature_psi:fleet1h{feature="country"}')
        assert all(float(sample["value"][1]) < 0.1 for sample in country)
        # Every deploy rule evaluated cleanly against the sidecar's real metrics: no vector
        # matching errors, no template errors.
        broken = [(rule["name"], rule.get("lastError")) for rule in await prometheus.rules() if rule["health"] == "err"]
        assert broken == []


async def _delivered(webhook: WebhookReceiver, receiver: str, alertname: str) -> list[Any]:
    return [body for body in webhook.notifications(receiver) if body["commonLabels"].get("alertname") == alertname]


async def _diagnose(prometheus: Prometheus, alertmanager: Alertmanager) -> str:
    """What each stage saw, for a failure message."""
    psi = await prometheus.query("model_feature:mlsidecar_feature_psi:fleet1h")
    observations = await prometheus.query("model_feature:mlsidecar_feature_observations:increase1h")
    return "\n".join(
        [
            f"fleet PSI: {[(s['metric'], s['value'][1]) for s in psi]}",
            f"observations: {[(s['metric'], s['value'][1]) for s in observations]}",
            f"Prometheus alerts: {await prometheus.alerts()}",
            f"Alertmanager alerts (all): {await alertmanager.alerts(active=True, silenced=True, inhibited=True)}",
            f"prometheus log:\n{prometheus.process.log_tail()}",
            f"alertmanager log:\n{alertmanager.process.log_tail()}",
        ]
    )


async def test_the_sidecars_own_alert_reaches_the_same_alertmanager(
    tmp_path: Path, reference: Path, alertmanager: Alertmanager, webhook: WebhookReceiver
) -> None:
    """No Prometheus: the sidecar's engine judges a rules file in the example format and posts to Alertmanager."""
    rules = tmp_path / "alerts.yaml"
    rules.write_text(GUIDE)  # the example alert rules format, unmodified
    env = {
        **sidecar_env(reference),
        "SIDECAR_ALERT_RULES": str(rules),
        "SIDECAR_ALERTMANAGER_URL": alertmanager.url,
        "SIDECAR_ALERT_RESEND_SECONDS": "1",
    }
    async with (
        run_server(scorer) as model_port,
        run_sidecar(f"http://127.0.0.1:{model_port}", env) as sidecar,
    ):
        await send(sidecar.proxy_port, rows(600, seed=3, income_shift=2.0))
        firing = await eventually(
            lambda: alertmanager.alerts(alertname="feature_drift"),
            timeout=DEADLINE,
            what="the sidecar's feature_drift active in Alertmanager",
        )
        (alert,) = firing
        assert alert["labels"] == {"alertname": "feature_drift", "severity": "P3", "model": MODEL}
        assert alert["annotations"]["runbook_url"] == "link_to_runbook"
        assert "Top drifting features: income (PSI" in alert["annotations"]["description"]
        assert alert["annotations"]["summary"].startswith("psi")
        assert [receiver["name"] for receiver in alert["receivers"]] == ["tickets"]
        # No labels, no accuracy: the other rule has insufficient data and stays quiet.
        assert await alertmanager.alerts(alertname="model_accuracy_drop") == []
        response = await raw_request(sidecar.admin_port, "GET", "/api/v1/alerts")
        status = orjson.loads(response.body)
        states = {rule["name"]: rule["state"] for rule in status["rules"]}
        assert states == {"model_accuracy_drop": "inactive", "feature_drift": "firing"}
        (active,) = status["active"]
        assert active["context"]["top_drift"][0]["feature"] == "income"
        assert status["flags"]["use_fallback_model"]["value"] is False
