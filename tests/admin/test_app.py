"""The admin port: /metrics (checked by the real promtool), /healthz, /readyz, and the JSON read from snapshots."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.assembly import assemble
from sidecar.config import Settings
from sidecar.labels.views import performance_json
from sidecar.server import Sidecar
from tests.drift.helpers import numeric, profile
from tests.http import raw_request, scrape
from tests.servers import Upstream, run_sidecar

pytestmark = pytest.mark.anyio


async def _traffic(sidecar: Sidecar) -> None:
    for path in ("/status/200", "/status/404", "/status/503", "/bytes?size=100000", "/chunked"):
        await raw_request(sidecar.proxy_port, "GET", path)


async def test_metrics_pass_promtool_check_with_no_findings(upstream: Upstream, sidecar: Sidecar) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (Debian package prometheus)"
    await _traffic(sidecar)
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        response = await raw_request(sidecar.admin_port, "GET", "/metrics", headers=[("accept", accept)])
        assert response.status == 200
        if accept:
            assert response.values("content-type")[0].startswith("application/openmetrics-text")
            continue  # promtool lints the Prometheus text format
        result = subprocess.run([promtool, "check", "metrics"], input=response.body, capture_output=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout + result.stderr == b"", "promtool reported findings"


async def test_layer1_metrics_count_the_traffic(upstream: Upstream, sidecar: Sidecar) -> None:
    await _traffic(sidecar)
    m = await scrape(sidecar.admin_port)
    labels = 'model="model",variant="primary"'
    assert m[f'mlsidecar_requests_total{{code="200",{labels}}}'] == 3
    assert m[f'mlsidecar_requests_total{{code="404",{labels}}}'] == 1
    assert m[f'mlsidecar_requests_total{{code="503",{labels}}}'] == 1
    assert m[f"mlsidecar_request_duration_seconds_count{{{labels}}}"] == 5
    assert m[f"mlsidecar_upstream_duration_seconds_count{{{labels}}}"] == 5
    assert m['mlsidecar_requests_in_flight{model="model"}'] == 0
    assert m['mlsidecar_response_size_bytes_count{model="model"}'] == 5
    assert m['mlsidecar_response_size_bytes_sum{model="model"}'] >= 100000
    assert m['mlsidecar_last_request_timestamp_seconds{model="model"}'] > 1.7e9
    for reason in ("connect", "timeout", "protocol"):
        assert m[f'mlsidecar_proxy_errors_total{{model="model",reason="{reason}"}}'] == 0
    assert m["process_cpu_seconds_total{}"] > 0


# The families that lacked the model label before it became the rule for every family.
_RELABELLED = {
    "mlsidecar_requests_in_flight",
    "mlsidecar_request_size_bytes",
    "mlsidecar_response_size_bytes",
    "mlsidecar_log_records",
    "mlsidecar_monitor_errors",
    "mlsidecar_alert_active",
    "mlsidecar_alert_notifications",
    "mlsidecar_retrain_triggers",
    "mlsidecar_fallback_active",
}


def _every_part(tmp_path: Path, upstream_url: str) -> dict[str, str]:
    """Every optional part configured, so that every family the sidecar can serve is on the page."""
    reference = tmp_path / "reference.json"
    reference.write_bytes(profile({"x": numeric(np.random.default_rng(5).normal(0.0, 1.0, 1_000))}).dumps())
    nowhere = "http://127.0.0.1:9"  # notification targets: only their series matter here
    return {
        "SIDECAR_MODEL_NAME": "credit",
        "SIDECAR_REFERENCE_PATH": str(reference),
        "SIDECAR_LOG_SINK": f"file:{tmp_path / 'predictions.jsonl'}",
        "SIDECAR_FALLBACK_URL": upstream_url,
        "SIDECAR_ALERTMANAGER_URL": nowhere,
        "SIDECAR_ALERT_WEBHOOK_URL": nowhere + "/alerts",
        "SIDECAR_RETRAIN_WEBHOOK_URL": nowhere + "/retrain",
        "SIDECAR_BASELINE_ACCURACY": "0.9",
        "SIDECAR_MODEL_TRAINED_AT": "2026-01-01T00:00:00Z",
    }


async def test_every_mlsidecar_sample_has_the_configured_model_label(upstream: Upstream, tmp_path: Path) -> None:
    async with run_sidecar(upstream.url, _every_part(tmp_path, upstream.url)) as sidecar:
        await _traffic(sidecar)
        response = await raw_request(sidecar.admin_port, "GET", "/metrics")
    assert response.status == 200
    families = [f for f in text_string_to_metric_families(response.body.decode()) if f.name.startswith("mlsidecar_")]
    assert _RELABELLED <= {family.name for family in families if family.samples}  # each with its series
    for family in families:
        for sample in family.samples:
            assert sample.labels.get("model") == "credit", sample


async def test_model_is_the_first_label_of_every_family(tmp_path: Path) -> None:
    # The text format sorts labels by name, so the declared order shows only inside the process,
    # in the assembled registry (nothing started: no upstream needed).
    upstream = "http://127.0.0.1:9"
    # Inline: one registry holds every family (in process mode the monitoring families are in the other process).
    env = {
        "SIDECAR_UPSTREAM_URL": upstream,
        "SIDECAR_STATE_DIR": str(tmp_path / "state"),
        "SIDECAR_MONITORING_PLANE": "inline",
    }
    built = assemble(Settings.from_env({**env, **_every_part(tmp_path, upstream)}))
    families = [family for family in built.registry.collect() if family.name.startswith("mlsidecar_")]
    assert _RELABELLED <= {family.name for family in families}
    for family in families:
        for sample in family.samples:
            assert list(sample.labels)[:1] == ["model"], sample


async def test_healthz(sidecar: Sidecar) -> None:
    response = await raw_request(sidecar.admin_port, "GET", "/healthz")
    assert (response.status, response.body) == (200, b'{"status":"ok"}')


async def test_readyz_follows_the_upstream_health_path(upstream: Upstream) -> None:
    env = {"SIDECAR_UPSTREAM_HEALTH_PATH": "/status/200", "SIDECAR_READY_CACHE_SECONDS": "0"}
    async with run_sidecar(upstream.url, env) as sidecar:
        assert (await raw_request(sidecar.admin_port, "GET", "/readyz")).status == 200
    env["SIDECAR_UPSTREAM_HEALTH_PATH"] = "/status/503"
    async with run_sidecar(upstream.url, env) as sidecar:
        response = await raw_request(sidecar.admin_port, "GET", "/readyz")
        assert response.status == 503
        assert b"upstream GET /status/503 returned 503" in response.body


async def test_readyz_caches_the_upstream_probe(upstream: Upstream) -> None:
    env = {"SIDECAR_UPSTREAM_HEALTH_PATH": "/status/200", "SIDECAR_READY_CACHE_SECONDS": "60"}
    async with run_sidecar(upstream.url, env) as sidecar:
        for _ in range(5):
            assert (await raw_request(sidecar.admin_port, "GET", "/readyz")).status == 200
    assert sum(1 for s in upstream.seen if s.path == "/status/200") == 1


async def test_readyz_reports_an_unreachable_upstream() -> None:
    async with run_sidecar("http://127.0.0.1:9", {"SIDECAR_READY_CACHE_SECONDS": "0"}) as sidecar:
        response = await raw_request(sidecar.admin_port, "GET", "/readyz")
    assert response.status == 503
    assert b"upstream GET / failed (connect)" in response.body


async def test_admin_paths_are_not_proxied(upstream: Upstream, sidecar: Sidecar) -> None:
    # The proxy port belongs to the model: its /metrics is the model's.
    response = await raw_request(sidecar.proxy_port, "GET", "/metrics")
    assert response.status == 404
    assert upstream.seen[-1].path == "/metrics"


@pytest.mark.monitoring_inline  # reads the evaluator's snapshot object
async def test_performance_renders_the_published_snapshot(sidecar: Sidecar) -> None:
    # Admin reads, never computes: the body is the evaluator's last snapshot as it was published.
    for _ in range(5):
        snapshot = sidecar.performance.snapshot
        response = await raw_request(sidecar.admin_port, "GET", "/api/v1/performance")
        if sidecar.performance.snapshot is snapshot:
            break  # no evaluation in between: the body must be this very snapshot
    assert response.status == 200
    body = orjson.loads(response.body)
    assert body.pop("output_drift") == {"details": "/api/v1/drift", "outputs": []}
    assert body == orjson.loads(orjson.dumps(performance_json(snapshot)))
    assert body["label_delay_seconds"]["buckets"]["+Inf"] == body["label_delay_seconds"]["count"] == 0
