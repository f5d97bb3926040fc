"""The README's picture of the status page: ``python -m tests.admin.screenshot [docs/status-page.png]``.

Runs the status page's scenario on a real sidecar, a real model server and
Debian's chromium, as the browser test does, for about half a minute: calm
traffic, then ``income`` shifts and ``country`` rebalances; labels come in
for most predictions, and alert rules without a wait fire on the drift. Then
it saves the whole page at a laptop's width.

A script rather than a test: a test run should not write into ``docs/``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tests.admin.browser import chromium
from tests.admin.scenario import model, p_good, rows, send, write_reference
from tests.http import raw_request
from tests.servers import run_server, run_sidecar

TOKEN = "screenshot"
RULES = """
alerts:
  - name: feature_drift
    condition: psi > 0.2
    severity: P3
    runbook: https://runbooks.example/ml-sidecar/feature_drift.md
    description: A feature's distribution drifted from the reference.
  - name: prediction_drift
    condition: prediction_psi > 0.2
    severity: P3
    runbook: https://runbooks.example/ml-sidecar/prediction_drift.md
  - name: accuracy_drop
    condition: accuracy_drop > 0.1
    severity: P2
    for: 1h
"""


async def _label(admin_port: int, batch: list[dict[str, Any]], request_id: str, seed: int) -> None:
    """The true outcome of each row: the model is right about 85 % of the time, less once income shifts."""
    rng = np.random.default_rng(seed)
    items = []
    for row, instance in enumerate(batch):
        truth = int(rng.random() < p_good(instance["income"] - 8.0))  # the world moved, the model did not
        items.append({"request_id": request_id, "row": row, "label": truth})
    headers = [("authorization", f"Bearer {TOKEN}"), ("content-type", "application/json")]
    response = await raw_request(admin_port, "POST", "/api/v1/labels", headers, orjson.dumps(items))
    assert response.status == 200, response


async def _phase(proxy_port: int, admin_port: int, name: str, seconds: float, seed: int, **shift: Any) -> None:
    steps = int(seconds / 0.25)
    for step in range(steps):
        batch = rows(25, seed=seed + step, **shift)
        await send(proxy_port, batch, ids=f"{name}-{step}")
        await asyncio.sleep(0.25)
        await _label(admin_port, batch, f"{name}-{step}-0", seed=seed + step)


async def main(output: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="screenshot-") as directory:
        rules = Path(directory, "alerts.yml")
        rules.write_text(RULES)
        env = {
            "SIDECAR_REFERENCE_PATH": str(write_reference(Path(directory, "reference.json"))),
            "SIDECAR_ALERT_RULES": str(rules),
            "SIDECAR_ADMIN_TOKEN": TOKEN,
            "SIDECAR_LOG_SINK": "none",
            "SIDECAR_MODEL_NAME": "credit",
            "SIDECAR_EVAL_INTERVAL_SECONDS": "1",
            "SIDECAR_DRIFT_WINDOW_SECONDS": "20",
            "SIDECAR_DRIFT_SLICE_SECONDS": "2",
            "SIDECAR_DRIFT_MIN_SAMPLES": "100",
            "SIDECAR_PERF_MIN_LABELS": "50",
            "SIDECAR_BASELINE_ACCURACY": "0.85",
        }
        async with run_server(model) as port, run_sidecar(f"http://127.0.0.1:{port}", env) as sidecar:
            admin, proxy = sidecar.admin_port, sidecar.proxy_port
            await _phase(proxy, admin, "calm", 12.0, seed=0)
            shifted = {"income_shift": 1.2, "country_shares": (0.25, 0.3, 0.45)}
            await _phase(proxy, admin, "shift", 16.0, seed=1000, **shifted)
            # Traffic goes on while the picture is taken, so the last request rate is not an empty second.
            more = asyncio.create_task(_phase(proxy, admin, "more", 10.0, seed=2000, **shifted))
            await asyncio.sleep(3.0)
            async with chromium() as browser:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(f"http://127.0.0.1:{admin}/")
                await page.locator("#readiness .ok").wait_for()
                await page.screenshot(path=str(output), full_page=True)
            more.cancel()
            await asyncio.gather(more, return_exceptions=True)
    print(f"wrote {output}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/status-page.png")))
