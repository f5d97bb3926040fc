"""The status page over HTTP, from a real sidecar: every section, the drift order, escaping and the CSP."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape as html_escape
from pathlib import Path

import pytest

from sidecar.admin.app import create_admin_app
from sidecar.admin.history import History
from sidecar.assembly import build_alerting, build_components
from sidecar.config import Settings
from sidecar.prometheus import create_registry
from sidecar.server import Sidecar
from sidecar.serving.flags import Flags
from sidecar.serving.metrics import ProxyMetrics
from tests.admin.scenario import drift_after, eventually, model, rows, send, write_reference
from tests.drift.helpers import record
from tests.http import RawResponse, raw_request
from tests.servers import run_server, run_sidecar

pytestmark = pytest.mark.anyio

SCRIPT_NAME = "<script>alert(1)</script>"
IMG_CATEGORY = "<img src=x onerror=alert(2)>"


@asynccontextmanager
async def sidecar_with(reference: Path, **env: str) -> AsyncIterator[Sidecar]:
    settings = {
        "SIDECAR_REFERENCE_PATH": str(reference),
        "SIDECAR_LOG_SINK": "none",
        "SIDECAR_EVAL_INTERVAL_SECONDS": "0.2",
        "SIDECAR_DRIFT_MIN_SAMPLES": "100",
        "SIDECAR_MODEL_NAME": "credit",
        **env,
    }
    async with run_server(model) as port, run_sidecar(f"http://127.0.0.1:{port}", settings) as sidecar:
        yield sidecar


async def page(sidecar: Sidecar) -> RawResponse:
    response = await raw_request(sidecar.admin_port, "GET", "/")
    assert response.status == 200, response
    assert response.values("content-type") == ["text/html; charset=utf-8"]
    return response


def first_column(html: str, table_class: str) -> list[str]:
    """The row headers of the first table with ``table_class``, in order."""
    body = html.split(f'class="drift-table {table_class}"', 1)[1].split("</tbody>", 1)[0]
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r'<th scope="row">(.*?)</th>', body)]


async def test_page_shows_every_section_and_the_drifted_feature_first(tmp_path: Path) -> None:
    async with sidecar_with(write_reference(tmp_path / "reference.json")) as sidecar:
        await send(sidecar.proxy_port, rows(400, seed=1, income_shift=2.0))
        api = await drift_after(sidecar.admin_port, 400)
        html = (await page(sidecar)).body.decode()
    for heading in ("Status", "Alerts", "Traffic", "Drift", "History", "Data quality", "Performance (delayed labels)"):
        assert re.search(rf'<h2 id="[a-z]+-h">{re.escape(heading)}</h2>', html), heading
    features = api["drift"]["features"]
    order = first_column(html, "feature-table")
    assert order[0] == "income"
    assert sorted(order) == sorted(f["name"] for f in features)
    # One distribution chart per feature, and one per model output.
    assert html.count('<figure class="feature-chart"') == len(features)
    assert html.count('<figure class="output-chart"') == len(api["drift"]["outputs"])
    income = next(f for f in features if f["name"] == "income")
    assert income["verdict"] == "drift"
    # The status card counts the drifting features beside the dataset's verdict.
    judged = [f for f in features if f["verdict"] != "insufficient_data"]
    drifted = sum(f["verdict"] == "drift" for f in judged)
    assert f"{drifted} of {len(judged)} features drift" in html.split('id="status-h"', 1)[1].split("</section>", 1)[0]
    psi = next(m["score"] for m in income["methods"] if m["method"] == "psi")
    assert f'<span class="psi">{psi:.3g}</span>' in html
    # The bins are named as the API names them.
    chart = html.split('data-name="income"', 1)[1].split("</figure>", 1)[0]
    for label, ref, cur in zip(income["labels"], income["reference"], income["current"], strict=True):
        cells = f'<th scope="row">{html_escape(label)}</th><td>{ref * 100:.1f} %</td><td>{cur * 100:.1f} %</td>'
        assert cells in chart


async def test_names_from_traffic_are_escaped(tmp_path: Path) -> None:
    # A learned reference takes its feature names and categories from payloads: they are the attacker's.
    reference = write_reference(tmp_path / "reference.json", extra=[SCRIPT_NAME], other_category=IMG_CATEGORY)
    async with sidecar_with(reference) as sidecar:
        await send(sidecar.proxy_port, rows(200, seed=2, extra=[SCRIPT_NAME]))
        await drift_after(sidecar.admin_port, 200)
        html = (await page(sidecar)).body.decode()
    assert SCRIPT_NAME not in html and IMG_CATEGORY not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    # The page's own script is the only one.
    assert html.count("<script") == 1


async def test_content_security_policy_allows_only_the_pages_own_script_and_style(tmp_path: Path) -> None:
    async with sidecar_with(write_reference(tmp_path / "reference.json")) as sidecar:
        response = await page(sidecar)
    html = response.body.decode()
    (policy,) = response.values("content-security-policy")
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        (inline,) = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        # The browser runs the inline block only if its hash is the one the policy names.
        assert directives[directive] == f"'sha256-{digest}'"
    assert response.values("cache-control") == ["no-store"]
    assert response.values("x-content-type-options") == ["nosniff"]
    # Nothing is loaded from elsewhere: no src or href leaves the admin port.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)


async def test_page_without_a_reference_says_why_drift_is_missing(tmp_path: Path) -> None:
    env = {"SIDECAR_LOG_SINK": "none", "SIDECAR_REFERENCE_WARMUP": "500", "SIDECAR_EVAL_INTERVAL_SECONDS": "0.2"}
    async with run_server(model) as port, run_sidecar(f"http://127.0.0.1:{port}", env) as sidecar:
        await send(sidecar.proxy_port, rows(50, seed=3))

        async def learning() -> str | None:
            html = (await page(sidecar)).body.decode()
            return html if "Learning the reference from warm-up traffic: 50 of 500 records" in html else None

        html = await eventually(learning)
    assert 'class="feature-chart"' not in html
    assert '<span class="verdict' not in html.split('id="drift-h"', 1)[1].split("</section>", 1)[0]


async def test_traffic_and_history_come_from_the_history_the_admin_app_is_given(tmp_path: Path) -> None:
    # The admin app as the monitoring side builds it, over real components, with the history recorded
    # at each evaluation (here, evaluations published by hand between bursts of traffic).
    reference = write_reference(tmp_path / "reference.json")
    env = {"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9", "SIDECAR_STATE_DIR": str(tmp_path), "SIDECAR_MODEL_NAME": "m"}
    settings = Settings.from_env({**env, "SIDECAR_REFERENCE_PATH": str(reference), "SIDECAR_DRIFT_MIN_SAMPLES": "50"})
    parts = build_components(settings)
    serving, flags = ProxyMetrics("m", ("primary",)), Flags(fallback_available=False)
    history = History(parts.monitors, parts.performance, serving)
    app = create_admin_app(
        create_registry("m", max_series=10_000),
        None,
        parts.monitors,
        parts.labels,
        parts.performance,
        build_alerting(settings, parts, serving, flags, "primary").engine,
        flags,
        admin_token=None,
        labels_max_bytes=1 << 20,
        history=history,
        eval_interval_seconds=0.5,
    )
    for burst in range(3):
        for i in range(10):
            serving.record(serving.routes["primary"], 503 if i == 0 else 200, 0.004, 0.003, 100, 100)
        parts.monitors.observe([record(row) for row in rows(100, seed=burst, income_shift=burst)])
        parts.monitors.snapshot = parts.monitors.evaluate()
        assert history.record()
    async with run_server(app) as port:
        response = await raw_request(port, "GET", "/")
    html = response.body.decode()
    assert response.status == 200
    assert 'data-refresh="1"' in html  # every evaluation, but never faster than once a second
    # Since start: 30 requests, 3 of them 5xx; and the rates between the first and the last point.
    assert re.search(r'<th scope="row">primary</th><td>30</td><td>10\.0 %</td><td>[0-9.]+ ms</td>', html)
    assert re.search(r"Last [0-9.]+ ms: <strong>[0-9.,]+ requests/s</strong> · 5xx 10\.0 %", html)
    history_section = html.split('id="history-h"', 1)[1].split("</section>", 1)[0]
    assert "3 evaluations" in history_section
    assert history_section.count('<svg class="lines"') == 2  # PSI, requests/s (no performance without labels)
    assert "No performance yet" in history_section
    assert html.count('<svg class="spark"') == len(parts.monitors.snapshot.drift.features)  # type: ignore[union-attr]
