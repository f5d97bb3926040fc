"""Process mode (the default): monitoring in its own process, reached only through real sockets.

Nothing here reads the monitoring objects directly, since they live in the
other process: every check goes through what a user sees, the admin API,
``/metrics`` and the prediction log.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.server import Sidecar
from tests.http import raw_request, scrape

# The same reference as the inline data-monitoring tests, built by the real `profile build` (a fixture).
from tests.monitoring.test_data_monitoring import _rows, profile_path, scorer  # noqa: F401 (a fixture)
from tests.servers import Upstream, run_server, run_sidecar, serve_process
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

MODEL = "credit"
ROWS_PER_REQUEST = 4


@asynccontextmanager
async def sidecar_with(profile: Path, log: Path, **env: str) -> AsyncIterator[Sidecar]:
    settings = {
        "SIDECAR_REFERENCE_PATH": str(profile),
        "SIDECAR_LOG_SINK": f"file:{log}",
        "SIDECAR_EVAL_INTERVAL_SECONDS": "0.2",
        "SIDECAR_MODEL_NAME": MODEL,
        "SIDECAR_ADMIN_TOKEN": "secret",
        **env,
    }
    async with run_server(scorer) as port, run_sidecar(f"http://127.0.0.1:{port}", settings) as sidecar:
        assert sidecar.monitor is not None, "process mode is the default"
        yield sidecar


async def _send(port: int, requests: int, seed: int) -> None:
    rows = _rows(requests * ROWS_PER_REQUEST, seed=seed)
    for start in range(0, len(rows), ROWS_PER_REQUEST):
        body = orjson.dumps({"instances": rows[start : start + ROWS_PER_REQUEST]})
        response = await raw_request(port, "POST", f"/v1/models/{MODEL}:predict", body=body)
        assert response.status == 200


async def _json(port: int, path: str) -> Any:
    response = await raw_request(port, "GET", path)
    assert response.status == 200, response
    return orjson.loads(response.body)


async def _monitor_pid(admin_port: int) -> int | None:
    # The test upstreams have no health route, so /readyz answers 503; its body still says where monitoring runs.
    monitoring = orjson.loads((await raw_request(admin_port, "GET", "/readyz")).body)["monitoring"]
    return monitoring.get("pid")  # type: ignore[no-any-return]


def _lines(log: Path) -> list[dict[str, Any]]:
    # Read while the monitoring process writes: the last line may be half-written yet.
    written = log.read_bytes() if log.exists() else b""
    return [orjson.loads(line) for line in written[: written.rfind(b"\n") + 1].splitlines()]


async def test_records_reach_the_sink_the_store_drift_and_quality_with_their_weights(
    profile_path: Path,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    log = tmp_path / "predictions.jsonl"
    async with sidecar_with(profile_path, log, SIDECAR_SAMPLE_RATE="0.5") as sidecar:
        await _send(sidecar.proxy_port, 200, seed=3)
        key = f'mlsidecar_captures_total{{model="{MODEL}",strategy="random"}}'
        # Once every kept exchange is in the log, the count of kept ones is final.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(_lines(log)) != (kept := (await scrape(sidecar.admin_port))[key]) * ROWS_PER_REQUEST or not kept:
            assert loop.time() < deadline, "the monitoring process did not catch up"
            await asyncio.sleep(0.1)
        assert 50 < kept < 150  # rate 0.5 of 200 exchanges
        # Every kept row counts twice (weight 1/0.5) in drift, once evaluated.
        expected = kept * ROWS_PER_REQUEST * 2

        async def weight() -> float:
            drift = await _json(sidecar.admin_port, "/api/v1/drift")
            return float(drift["drift"]["features"][0]["weight"]) if drift["drift"] else 0.0

        deadline = loop.time() + 10
        while (measured := await weight()) != expected:
            assert loop.time() < deadline, f"drift weight {measured}, expected {expected}"
            await asyncio.sleep(0.1)
        quality = await _json(sidecar.admin_port, "/api/v1/quality")
        assert quality["quality"]["records_total"] == kept * ROWS_PER_REQUEST
        # The prediction log has every kept row, with the probability it was kept with.
        await wait_until(lambda: len(_lines(log)) == kept * ROWS_PER_REQUEST)
        lines = _lines(log)
        assert {line["sampling"]["probability"] for line in lines} == {0.5}
        # The store: a label for a logged prediction joins.
        first = lines[0]
        label = {"request_id": first["request_id"], "row": first["row"], "label": 1}
        response = await raw_request(
            sidecar.admin_port,
            "POST",
            "/api/v1/labels",
            headers=[("authorization", "Bearer secret"), ("content-type", "application/json")],
            body=orjson.dumps([label]),
        )
        assert response.status == 200, response
        assert orjson.loads(response.body)["joined"] == 1


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
async def test_every_thread_of_the_monitoring_process_yields_to_the_proxy(
    profile_path: Path,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    """Once ready, the monitoring process and its writer and sink threads run at SCHED_IDLE; the proxy does not."""
    async with sidecar_with(profile_path, tmp_path / "predictions.jsonl") as sidecar:
        await _send(sidecar.proxy_port, 20, seed=5)  # the sink and store threads exist once they have work
        assert sidecar.monitor is not None and sidecar.monitor.pid is not None
        tasks = os.listdir(f"/proc/{sidecar.monitor.pid}/task")
        assert len(tasks) >= 3  # the loop, the store's writer, the file sink's writer
        assert {os.sched_getscheduler(int(task)) for task in tasks} == {os.SCHED_IDLE}
        assert os.sched_getscheduler(0) == os.SCHED_OTHER


async def test_a_killed_monitoring_process_is_restarted_and_counted_and_serving_goes_on(
    profile_path: Path,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    log = tmp_path / "predictions.jsonl"
    async with sidecar_with(profile_path, log) as sidecar:
        await _send(sidecar.proxy_port, 20, seed=4)
        await wait_until(lambda: len(_lines(log)) == 20 * ROWS_PER_REQUEST)
        before = await raw_request(sidecar.admin_port, "GET", "/readyz")
        pid = await _monitor_pid(sidecar.admin_port)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        restarts = f'mlsidecar_monitor_restarts_total{{model="{MODEL}"}}'
        up = f'mlsidecar_monitor_up{{model="{MODEL}"}}'

        # Serving never notices: requests keep succeeding while the other process is down.
        async def serve_throughout() -> None:
            await _send(sidecar.proxy_port, 50, seed=5)

        serving = asyncio.create_task(serve_throughout())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while (metrics := await scrape(sidecar.admin_port)).get(up) != 0:
            assert loop.time() < deadline, "the crash was not noticed"
            await asyncio.sleep(0.01)
        # Scraped from the serving process alone: Layer 1 is there, the monitoring families are not.
        assert metrics[restarts] == 1
        assert not any(name.startswith("mlsidecar_feature_drift") for name in metrics)
        down = await raw_request(sidecar.admin_port, "GET", "/api/v1/drift")
        assert (down.status, down.values("retry-after")) == (503, ["1"])
        # Readiness is the model's: the same answer, with the monitoring process shown as restarting.
        during = await raw_request(sidecar.admin_port, "GET", "/readyz")
        assert during.status == before.status
        assert orjson.loads(during.body)["reasons"] == orjson.loads(before.body)["reasons"]
        assert orjson.loads(during.body)["monitoring"] == {"state": "restarting"}
        await serving
        deadline = loop.time() + 15
        while (await scrape(sidecar.admin_port)).get(up) != 1:
            assert loop.time() < deadline, "the monitoring process was not restarted"
            await asyncio.sleep(0.05)
        assert await _monitor_pid(sidecar.admin_port) not in (pid, None)
        # Captures flow again into the same log (after what was queued while it was down, so at least these).
        logged = len(_lines(log))
        await _send(sidecar.proxy_port, 10, seed=6)
        await wait_until(lambda: len(_lines(log)) >= logged + 10 * ROWS_PER_REQUEST, timeout=10)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited, waiting to be reaped by whoever inherited it


async def test_sigterm_drains_both_processes(upstream: Upstream, tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    env = {"SIDECAR_LOG_SINK": f"file:{log}", "SIDECAR_SHUTDOWN_TIMEOUT_SECONDS": "10"}
    async with serve_process(upstream.url, env) as (process, port, admin_port):
        pid = await _monitor_pid(admin_port)
        assert pid is not None
        for _ in range(100):
            response = await raw_request(port, "POST", "/slow?delay=0", body=b'{"instances": [[1, 2]]}')
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    # Every exchange the proxy served was handed over, processed and written before both exited.
    assert len(_lines(log)) == 100
    await wait_until(lambda: _gone(pid))
