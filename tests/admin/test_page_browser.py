"""The status page in a real browser: Debian's chromium, driven by Playwright, on a real sidecar with drifted traffic.

Checks what only a browser can: the page runs without a console error under
its own Content-Security-Policy, an injected name stays text (no dialog
opens), the script keeps the page current as traffic arrives, and a phone's
width never makes the page scroll sideways. A second sidecar runs a split
experiment between two model servers, and its section shows what
``GET /api/v1/experiments`` says.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.admin.markup import number, percent
from sidecar.records import parse_rfc3339
from tests.admin.browser import chromium, require_browser
from tests.admin.scenario import drift_after, eventually, get_json, model, rows, send, write_reference
from tests.experiments.scenario import SPLIT_BY_USER
from tests.http import raw_request
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


USERS = 160
TOKEN = "browser-token"
# The experiment section's tables as the page shows them: each body row's cells, as text.
_ROWS = """selector => [...document.querySelectorAll(selector + " tbody tr")].map(
    row => [...row.querySelectorAll("th, td")].map(cell => cell.textContent.trim()))"""


async def _post_outcomes(admin_port: int, items: list[dict[str, Any]]) -> int | None:
    """Post the conversions; the number stored once every one has joined its user's arm, else None (retry)."""
    headers = [("authorization", f"Bearer {TOKEN}"), ("content-type", "application/json")]
    response = await raw_request(admin_port, "POST", "/api/v1/outcomes", headers, orjson.dumps(items))
    assert response.status == 200, response
    body = orjson.loads(response.body)
    # The prediction store writes in the background: an outcome for a prediction not yet written is unmatched,
    # and posting again is harmless (a joined one comes back as a duplicate).
    done: int = body["joined"] + body["duplicate"]
    return done if done == len(items) else None


async def test_experiment_section_in_chromium(tmp_path: Path) -> None:
    require_browser()
    async with run_server(model) as control, run_server(model) as treatment:
        definition = tmp_path / "experiment.yml"
        definition.write_text(SPLIT_BY_USER % treatment)
        env = {
            "SIDECAR_REFERENCE_PATH": str(write_reference(tmp_path / "reference.json")),
            "SIDECAR_LOG_SINK": "none",
            "SIDECAR_EVAL_INTERVAL_SECONDS": "0.25",  # the page then refreshes every second
            "SIDECAR_MODEL_NAME": "credit",
            "SIDECAR_ADMIN_TOKEN": TOKEN,
            "SIDECAR_EXPERIMENT_PATH": str(definition),
            "SIDECAR_EXPERIMENT_INTERVAL_SECONDS": "1",
        }
        async with run_sidecar(f"http://127.0.0.1:{control}", env) as sidecar, chromium() as browser:
            # One request per user, each routed by its x-user-id; a third of the users convert.
            for user, row in enumerate(rows(USERS, seed=4)):
                headers = [("content-type", "application/json"), ("x-user-id", f"u-{user}")]
                body = orjson.dumps({"instances": [row]})
                response = await raw_request(sidecar.proxy_port, "POST", "/v1/models/credit:predict", headers, body)
                assert response.status == 200, response
            conversions = [{"unit": f"u-{user}", "metric": "conversion", "value": 1} for user in range(0, USERS, 3)]
            await eventually(lambda: _post_outcomes(sidecar.admin_port, conversions))
            posted = time.time()

            async def analysed() -> dict[str, Any] | None:
                entry: dict[str, Any]
                [entry] = (await get_json(sidecar.admin_port, "/api/v1/experiments"))["experiments"]
                # An analysis that read the store an interval after every conversion was stored: every one is in it.
                if entry["analysis"] is None or parse_rfc3339(entry["evaluated_at"]) < posted + 1.0:
                    return None
                return entry

            api = await eventually(analysed, timeout=15.0)
            analysis = api["analysis"]
            served = (await raw_request(sidecar.admin_port, "GET", "/")).body.decode()
            assert 'id="experiment-h"' in served, "no experiment section: create_admin_app was not given the experiment"

            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(f"http://127.0.0.1:{sidecar.admin_port}/")
            section = page.locator("section[aria-labelledby=experiment-h]")
            await section.wait_for()
            decision = analysis["decision"]
            banner = section.locator(".decision")
            assert await banner.get_attribute("class") == f"decision d-{decision['decision']}"
            assert await banner.locator(".verdict").text_content() == decision["decision"].replace("_", " ")
            assert decision["reason"] in (await banner.text_content() or "")
            # The figures stay the same from one analysis to the next once the traffic has stopped, so the page,
            # refreshed every second, shows the API's numbers whichever analysis it read.
            arms = await page.evaluate(_ROWS, "table.arm-table")
            assert [row[:6] for row in arms] == [
                [
                    arm["name"],
                    number(arm["weight"]),
                    number(arm["routed"]["keyed"]),
                    number(arm["routed"]["randomised"]),
                    number(arm["captured_units"]),
                    number(arm["requests"]),
                ]
                for arm in analysis["arms"]
            ]
            assert sum(arm["requests"] for arm in analysis["arms"]) == USERS
            ratios = await page.evaluate(_ROWS, "table.srm-table")
            assert [(row[0], row[3]) for row in ratios] == [
                (stage, number(check["pvalue"])) for stage, check in analysis["srm"].items()
            ]
            (effect,) = analysis["metrics"][0]["effects"]
            (row,) = await page.evaluate(_ROWS, "table.effect-table")
            assert row[6:8] == [number(effect["pvalue"]), number(effect["pvalue_adjusted"])]
            assert row[5].startswith(("+" if effect["lift"] > 0 else "") + percent(effect["lift"]))
            assert await page.locator("nav a[href='#experiment-h']").count() == 1
            # On a phone the section's wide tables scroll inside their own boxes, not the page.
            phone = await browser.new_page(viewport={"width": 390, "height": 844})
            phone.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            await phone.goto(f"http://127.0.0.1:{sidecar.admin_port}/#experiment-h")
            width = await phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"
            assert problems == []
