"""The Notifier against the real Alertmanager (Debian package ``prometheus-alertmanager``).

The stand-in server of test_notify.py checks the payload's shape as written;
this checks that Alertmanager itself accepts it, shows the alert with its
labels and annotations, and takes ``endsAt`` as the resolution.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.alerting.conditions import parse
from sidecar.alerting.engine import AlertEngine
from sidecar.alerting.notify import Notifier, alertmanager_url
from sidecar.alerting.rules import AlertRule
from sidecar.alerting.signals import Signals
from sidecar.upstream.client import UpstreamClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get_json(client: UpstreamClient, path: str) -> Any:
    async with client.request("GET", path, []) as response:
        body = await response.read()
        return orjson.loads(body) if response.status == 200 else None


async def until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll an async check until it returns something truthy; the timeout only bounds a failing test."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.05)
        return result


@asynccontextmanager
async def alertmanager(tmp_path: Path) -> AsyncIterator[UpstreamClient]:
    exe = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if exe is None:
        pytest.fail(
            "Alertmanager is not on PATH. `make test` installs it (Debian package `prometheus-alertmanager`).",
            pytrace=False,
        )
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG)
    port = free_port()
    log = tmp_path / "alertmanager.log"
    # Its log goes to a file: a pipe nobody reads could fill up and stall it.
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                exe,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip port: one instance, nothing to find
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    client = UpstreamClient(f"http://127.0.0.1:{port}", timeout=5, connect_timeout=5, max_connections=4)
    await client.open()
    try:

        async def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"alertmanager exited: {log.read_text()}")
            try:
                async with client.request("GET", "/-/ready", []) as response:
                    await response.read()
                    return response.status == 200
            except Exception:
                return False

        await until(ready)
        yield client
    finally:
        await client.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_alertmanager_shows_the_alert_then_takes_the_resolve(tmp_path: Path) -> None:
    async with alertmanager(tmp_path) as client:
        base, path = alertmanager_url(client.base_url)
        assert base == client.base_url
        rule = AlertRule(
            "serving_errors_high",
            parse("error_rate > 0.5"),
            "P1",
            runbook="https://runbooks.example/serving_errors_high.md",
            labels={"team": "ml"},
            description="More than half of the requests fail.",
        )
        engine = AlertEngine([rule], model="iris")
        notifier = Notifier(
            "iris", firing=engine.firing, alertmanager=client, alertmanager_path=path, generator_url="http://x/"
        )
        engine.subscribe(notifier.enqueue)
        task = asyncio.create_task(notifier.run())
        now = time.time()
        engine.evaluate(Signals(values={"error_rate": 0.9}), now)

        async def shown() -> Any:
            return await get_json(client, "/api/v2/alerts")

        [alert] = await until(shown)
        assert alert["labels"] == {"alertname": "serving_errors_high", "severity": "P1", "model": "iris", "team": "ml"}
        assert alert["annotations"] == {
            "summary": "error_rate = 0.9 (error_rate > 0.5)",
            "description": "More than half of the requests fail.",
            "runbook_url": "https://runbooks.example/serving_errors_high.md",
            "value": "0.9",
        }
        assert alert["status"]["state"] == "active"
        assert alert["generatorURL"] == "http://x/"

        engine.evaluate(Signals(values={"error_rate": 0.0}), time.time())

        async def resolved() -> bool:
            alerts: object = await get_json(client, "/api/v2/alerts")
            return alerts == []

        await until(resolved)
        await notifier.close(asyncio.get_running_loop().time() + 5)
        await task
    registry = CollectorRegistry()
    registry.register(notifier.metrics.notifications)
    name = "mlsidecar_alert_notifications_total"
    assert registry.get_sample_value(name, {"model": "iris", "target": "alertmanager", "outcome": "delivered"}) == 2
    assert registry.get_sample_value(name, {"model": "iris", "target": "alertmanager", "outcome": "failed"}) == 0
