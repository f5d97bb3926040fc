"""The fallback model: a 5xx burst fires the P1 alert, auto-fallback reroutes, clearing the flag routes back.

Two real model servers on 127.0.0.1: a primary that fails (500) while ``broken``
is set, and a simpler fallback that always answers. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.server import Sidecar
from tests.http import RawResponse, raw_request, scrape
from tests.servers import Scope, read_body, run_server, run_sidecar

pytestmark = pytest.mark.anyio

TOKEN = "flag-token"
AUTH = [("authorization", f"Bearer {TOKEN}"), ("content-type", "application/json")]
PREDICT = "/v1/models/m:predict"
# The built-in serving_errors_high, with no pending time so the test needs no minute.
RULES = """\
alerts:
  - name: serving_errors_high
    condition: error_rate > 0.5
    severity: P1
    runbook: https://example.com/runbooks/serving_errors_high.md
"""


class Primary:
    """A model server that answers 500 while ``broken``."""

    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await read_body(receive)
        self.calls += scope["path"] == PREDICT  # not the readiness probes
        status, body = (500, b'{"error": "model crashed"}') if self.broken else (200, b'{"predictions": [[0.2, 0.8]]}')
        await _respond(send, status, body)


async def fallback(scope: Scope, receive: Any, send: Any) -> None:
    await read_body(receive)
    await _respond(send, 200, b'{"predictions": [[0.5, 0.5]], "model": "fallback"}')


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def with_fallback(tmp_path: Path, primary: Primary, **env: str) -> AsyncIterator[Sidecar]:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    async with run_server(primary) as primary_port, run_server(fallback) as fallback_port:
        settings = {
            "SIDECAR_FALLBACK_URL": f"http://127.0.0.1:{fallback_port}",
            "SIDECAR_ADMIN_TOKEN": TOKEN,
            "SIDECAR_ALERT_RULES": str(rules),
            "SIDECAR_ALERT_MIN_REQUESTS": "10",
            "SIDECAR_EVAL_INTERVAL_SECONDS": "0.1",
            "SIDECAR_LOG_SINK": "none",
            **env,
        }
        async with run_sidecar(f"http://127.0.0.1:{primary_port}", settings) as sidecar:
            yield sidecar


async def predict(sidecar: Sidecar) -> RawResponse:
    return await raw_request(sidecar.proxy_port, "POST", PREDICT, body=b'{"instances": [[1.0]]}')


async def until(condition: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_5xx_burst_switches_to_the_fallback_and_clearing_switches_back(tmp_path: Path) -> None:
    primary = Primary()
    async with with_fallback(tmp_path, primary, SIDECAR_AUTO_FALLBACK="true") as sidecar:
        for _ in range(12):
            assert (await predict(sidecar)).status == 500
        await until(lambda: sidecar.flags.use_fallback_model, "auto-fallback")
        calls = primary.calls
        answers = [await predict(sidecar) for _ in range(5)]
        assert {a.status for a in answers} == {200}
        assert all(orjson.loads(a.body)["model"] == "fallback" for a in answers)
        assert primary.calls == calls  # none of them reached the broken model

        ready = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/readyz")).body)
        assert ready["flags"]["use_fallback_model"]["value"] is True
        assert ready["flags"]["use_fallback_model"]["source"] == "alert:serving_errors_high"
        metrics = await scrape(sidecar.admin_port)
        assert metrics['mlsidecar_requests_total{code="200",model="model",variant="fallback"}'] == 5
        assert metrics['mlsidecar_requests_total{code="500",model="model",variant="primary"}'] == 12
        assert metrics['mlsidecar_fallback_active{model="model"}'] == 1
        assert metrics['mlsidecar_alert_active{alert="serving_errors_high",model="model",severity="P1"}'] == 1

        # The model is fixed; an operator clears the flag and traffic goes back to it.
        primary.broken = False
        cleared = await raw_request(
            sidecar.admin_port, "POST", "/api/v1/flags/use_fallback_model", AUTH, b'{"value": false, "reason": "fixed"}'
        )
        assert cleared.status == 200 and orjson.loads(cleared.body)["use_fallback_model"]["value"] is False
        answer = await predict(sidecar)
        assert answer.status == 200 and orjson.loads(answer.body) == {"predictions": [[0.2, 0.8]]}
        assert primary.calls == calls + 1
        assert (await scrape(sidecar.admin_port))['mlsidecar_fallback_active{model="model"}'] == 0


async def test_the_flag_by_hand_and_its_errors(tmp_path: Path) -> None:
    primary = Primary()
    primary.broken = False
    async with with_fallback(tmp_path, primary) as sidecar:
        flag = "/api/v1/flags/use_fallback_model"
        cases = [
            (None, b'{"value": true}', 401),
            ([("authorization", "Bearer nope")], b'{"value": true}', 403),
            (AUTH, b"{not json", 400),
            (AUTH, b'{"value": "yes"}', 422),
        ]
        for headers, body, status in cases:
            response = await raw_request(sidecar.admin_port, "POST", flag, headers, body)
            assert response.status == status, (headers, body, response)
        assert (await raw_request(sidecar.admin_port, "POST", "/api/v1/flags/nope", AUTH, b"{}")).status == 404
        assert not sidecar.flags.use_fallback_model

        response = await raw_request(sidecar.admin_port, "POST", flag, AUTH, b'{"value": true, "reason": "drill"}')
        assert response.status == 200
        assert orjson.loads((await predict(sidecar)).body)["model"] == "fallback"
        flags = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/api/v1/flags")).body)
        assert flags["use_fallback_model"] | {"changed_at": None} == {
            "value": True,
            "available": True,
            "changed_at": None,
            "source": "api",
            "reason": "drill",
        }


async def test_without_a_fallback_url_the_flag_cannot_be_set(tmp_path: Path) -> None:
    async with run_sidecar("http://127.0.0.1:9", {"SIDECAR_ADMIN_TOKEN": TOKEN}) as sidecar:
        flag = "/api/v1/flags/use_fallback_model"
        response = await raw_request(sidecar.admin_port, "POST", flag, AUTH, b'{"value": true}')
        assert response.status == 409 and "SIDECAR_FALLBACK_URL" in orjson.loads(response.body)["error"]
