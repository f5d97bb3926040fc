"""The ``make demo`` stack: the model server in-process, then ``python -m demo`` end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest

from demo.model_server import (
    FEATURES,
    INCOME_MEAN,
    INCOME_STD,
    READY_PATH,
    create_app,
    make_dataset,
    sample_features,
    serve,
    train_model,
)
from demo.traffic import PREDICT_PATH, instance
from tests.http import RawResponse, raw_request, scrape

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
JSON = [("content-type", "application/json")]
OK_REQUESTS = 'mlsidecar_requests_total{code="200",model="credit-risk",variant="primary"}'


@asynccontextmanager
async def model_server() -> AsyncIterator[int]:
    async with serve(create_app(train_model(seed=0))) as url:
        yield int(url.rsplit(":", 1)[1])


async def predict(port: int, body: bytes, path: str = PREDICT_PATH) -> RawResponse:
    return await raw_request(port, "POST", path, JSON, body)


async def test_predictions_are_probabilities_that_beat_chance() -> None:
    # Fresh data from another seed than the training set's.
    x, y = make_dataset(np.random.default_rng(12345), 500)
    async with model_server() as port:
        response = await predict(port, orjson.dumps({"instances": x.tolist()}))
    assert response.status == 200
    probabilities = np.array(orjson.loads(response.body)["predictions"])
    assert probabilities.shape == (500, 2)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    accuracy = np.mean(probabilities.argmax(axis=1) == y)
    always_majority = max(y.mean(), 1 - y.mean())
    assert accuracy > always_majority + 0.05


async def test_instances_keyed_by_name_equal_instances_in_order() -> None:
    objects = [instance(row) for row in sample_features(np.random.default_rng(7), 3)]
    lists = [[row[name] for name in FEATURES] for row in objects]
    async with model_server() as port:
        by_name = await predict(port, orjson.dumps({"instances": objects}))
        in_order = await predict(port, orjson.dumps({"instances": lists}))
        status = await raw_request(port, "GET", "/v1/models/credit-risk")
        ready = await raw_request(port, "GET", READY_PATH)
    assert by_name.status == in_order.status == 200
    assert orjson.loads(by_name.body) == orjson.loads(in_order.body)
    assert orjson.loads(status.body) == {
        "name": "credit-risk",
        "ready": True,
        "features": list(FEATURES),
        "classes": ["repaid", "default"],
    }
    assert (ready.status, orjson.loads(ready.body)) == (200, {"ready": True})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[[1, 2, 3, 4, 5]]", '{"instances": [...]}'),
        (b'{"instances": []}', "at least one instance"),
        (b'{"instances": [[1, 2]]}', "instances[0]: expected 5 values"),
        (b'{"instances": [{"income": 50, "height": 2}]}', "missing ['debt_ratio'"),
        (
            b'{"instances": [[50, 0.3, 40, 4, 0], [50, 0.3, "40", 4, 0]]}',
            'instances[1].age: expected a number, got "40"',
        ),
        (b'{"instances": [[50, 0.3, 40, true, 0]]}', "instances[0].credit_lines: expected a number"),
        (b'{"instances": ["50, 0.3, 40, 4, 0"]}', "instances[0]: expected a list of values or an object"),
        (orjson.dumps({"instances": [[50, 0.3, 40, 4, 0]] * 1025}), "at most 1024 instances"),
    ],
    ids=["not-json", "not-object", "empty", "short-row", "wrong-keys", "string", "bool", "row-type", "too-many"],
)
async def test_malformed_input_is_a_400_that_says_what_is_wrong(body: bytes, message: str) -> None:
    async with model_server() as port:
        response = await predict(port, body)
    assert response.status == 400
    assert message in orjson.loads(response.body)["error"]


async def test_unknown_model_is_a_404() -> None:
    async with model_server() as port:
        response = await predict(port, b'{"instances": [[50, 0.3, 40, 4, 0]]}', "/v1/models/other:predict")
    assert response.status == 404
    assert "other" in orjson.loads(response.body)["error"]


def test_income_shift_moves_only_income() -> None:
    base = sample_features(np.random.default_rng(3), 20_000)
    shifted = sample_features(np.random.default_rng(3), 20_000, income_shift=-1.0)
    income = FEATURES.index("income")
    assert base[:, income].mean() == pytest.approx(INCOME_MEAN, abs=0.5)
    assert shifted[:, income].mean() == pytest.approx(INCOME_MEAN - INCOME_STD, abs=0.5)
    others = [i for i in range(len(FEATURES)) if i != income]
    np.testing.assert_array_equal(base[:, others], shifted[:, others])


@dataclass
class Demo:
    process: asyncio.subprocess.Process
    proxy_port: int
    admin_port: int
    output: asyncio.Task[tuple[bytes, bytes]]


def _free_ports(n: int) -> list[int]:
    # All bound at once so that they differ; closed before the demo binds them.
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@asynccontextmanager
async def run_demo(seconds: float) -> AsyncIterator[Demo]:
    proxy_port, admin_port = _free_ports(2)
    env = {
        **os.environ,
        "DEMO_SECONDS": str(seconds),
        "DEMO_PROXY_PORT": str(proxy_port),
        "DEMO_ADMIN_PORT": str(admin_port),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "demo",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # Reading both pipes from the start keeps a chatty demo from blocking on a full pipe.
    demo = Demo(process, proxy_port, admin_port, asyncio.create_task(process.communicate()))
    try:
        yield demo
    finally:
        if process.returncode is None:
            process.kill()
        await demo.output


async def wait_for_ok_requests(demo: Demo) -> float:
    """Poll ``/metrics`` until it counts a proxied 200 or the demo exits; the count seen (0 if none)."""
    while not demo.output.done():
        try:
            ok = (await scrape(demo.admin_port)).get(OK_REQUESTS, 0.0)
        except OSError:  # not listening yet
            ok = 0.0
        if ok > 0:
            return ok
        await asyncio.sleep(0.2)
    return 0.0


@pytest.mark.slow
async def test_demo_serves_traffic_through_the_sidecar_then_stops_after_demo_seconds() -> None:
    async with run_demo(seconds=4) as demo:
        async with asyncio.timeout(30):
            ok = await wait_for_ok_requests(demo)
            stdout, stderr = await demo.output
    assert demo.process.returncode == 0, stderr.decode()
    assert ok > 0
    text = stdout.decode()
    assert f"http://127.0.0.1:{demo.proxy_port}{PREDICT_PATH}" in text
    assert f"http://127.0.0.1:{demo.admin_port}/metrics" in text
    assert "stopping; traffic:" in text and " 0 errors" in text


@pytest.mark.slow
async def test_demo_stops_gracefully_on_sigint() -> None:
    async with run_demo(seconds=0) as demo:
        async with asyncio.timeout(30):
            assert await wait_for_ok_requests(demo) > 0
            demo.process.send_signal(signal.SIGINT)
            stdout, stderr = await demo.output
    assert demo.process.returncode == 0, stderr.decode()
    assert "stopping; traffic:" in stdout.decode()
