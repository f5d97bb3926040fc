"""The status page in a real browser: Debian's chromium, driven by Playwright, on a real sidecar with drifted traffic.

Checks what only a browser can: the page runs without a console error under
its own Content-Security-Policy, an injected name stays text (no dialog
opens), the script keeps the page current as traffic arrives, and a phone's
width never makes the page scroll sideways.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.admin.browser import chromium, require_browser
from tests.admin.scenario import drift_after, get_json, model, rows, send, write_reference
from tests.servers import run_server, run_sidecar

pytestmark = pytest.mark.anyio

SCRIPT_NAME = "<script>alert(1)</script>"
IMG_CATEGORY = "<img src=x onerror=alert(2)>"

# The drift table as the page shows it: name, PSI and the window's count per row, in order.
_TABLE = """() => [...document.querySelectorAll("table.feature-table tbody tr")].map(row => ({
    name: row.querySelector("th").textContent,
    psi: row.querySelector(".psi").textContent,
    count: row.querySelectorAll("td")[3].textContent.split(" ")[0],
}))"""
# Each feature chart: its name and the bins of its text alternative.
_CHARTS = """() => [...document.querySelectorAll("figure.feature-chart")].map(figure => ({
    name: figure.dataset.name,
    svg: figure.querySelectorAll("svg[role=img]").length,
    bins: [...figure.querySelectorAll("table.bin-table tbody tr")].map(row => row.querySelector("th").textContent),
}))"""


def _psi(feature: dict[str, Any]) -> str:
    score = next(m["score"] for m in feature["methods"] if m["method"] == "psi")
    return "–" if score is None else f"{score:.3g}"


def _count(feature: dict[str, Any]) -> str:
    return str(feature["stats"]["count"])


async def test_status_page_in_chromium(tmp_path: Path) -> None:
    require_browser()
    reference = write_reference(tmp_path / "reference.json", extra=[SCRIPT_NAME], other_category=IMG_CATEGORY)
    env = {
        "SIDECAR_REFERENCE_PATH": str(reference),
        "SIDECAR_LOG_SINK": "none",
        "SIDECAR_EVAL_INTERVAL_SECONDS": "0.25",  # the page then refreshes every second
        "SIDECAR_DRIFT_MIN_SAMPLES": "100",
        "SIDECAR_MODEL_NAME": "credit",
    }
    async with (
        run_server(model) as port,
        run_sidecar(f"http://127.0.0.1:{port}", env) as sidecar,
        chromium() as browser,
    ):
        await send(sidecar.proxy_port, rows(400, seed=1, income_shift=2.0, extra=[SCRIPT_NAME]))
        api = (await drift_after(sidecar.admin_port, 400))["drift"]
        url = f"http://127.0.0.1:{sidecar.admin_port}/"

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(10_000)
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("dialog", lambda dialog: problems.append(f"a dialog opened: {dialog.message}"))
        await page.goto(url)

        table = await page.evaluate(_TABLE)
        features = {f["name"]: f for f in api["features"]}
        assert table[0]["name"] == "income"
        assert {row["name"] for row in table} == set(features)
        for row in table:
            assert row["psi"] == _psi(features[row["name"]]), row
            assert row["count"] == _count(features[row["name"]]), row
        charts = await page.evaluate(_CHARTS)
        assert sorted(chart["name"] for chart in charts) == sorted(features)
        for chart in charts:
            assert chart["svg"] == 1
            assert chart["bins"] == features[chart["name"]]["labels"]
        # The script asked /readyz, as the probes do (the model answers its health path).
        await page.locator("#readiness .ok").wait_for()

        # More traffic: the page shows the new window without a reload.
        await send(sidecar.proxy_port, rows(300, seed=2, income_shift=2.0, extra=[SCRIPT_NAME]))
        after = {f["name"]: f for f in (await drift_after(sidecar.admin_port, 700))["drift"]["features"]}
        await page.wait_for_function(
            "count => [...document.querySelectorAll('table.feature-table tbody tr')].some("
            "row => row.querySelector('th').textContent === 'income'"
            " && row.querySelectorAll('td')[3].textContent.startsWith(count + ' '))",
            arg=_count(after["income"]),
        )
        latest = {f["name"]: f for f in (await get_json(sidecar.admin_port, "/api/v1/drift"))["drift"]["features"]}
        income = next(row for row in await page.evaluate(_TABLE) if row["name"] == "income")
        # The page may be one evaluation behind the API, never ahead and never mixed: compare with either.
        assert income["psi"] in (_psi(after["income"]), _psi(latest["income"]))

        # A phone: the page fits its width; wide tables scroll inside their own box.
        phone = await browser.new_page(viewport={"width": 390, "height": 844})
        phone.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        await phone.goto(url)
        width = await phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"
        assert problems == []
