"""Payload buffers are bounded in bytes: large payloads past a bound are dropped, counted, never held.

The capture queue used to hold 10,000 exchanges of up to 1 MiB bodies each
(about 20 GB at worst, against the example manifest's 256 MiB), and each
sink's queue 10,000 rows of any size. These tests fill each with large
payloads and check the drops are counted and the held bytes stay under the
bound, first on the pieces and then through a real sidecar.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from sidecar.capture.handoff import Capture, Handoff, exchange_bytes
from sidecar.records import Exchange, ExchangeFields, PredictionRecord
from sidecar.sampling import RandomSampler
from sidecar.server import Sidecar
from tests.capture.workers import kserve_worker
from tests.http import raw_request, scrape
from tests.servers import read_body, run_server, run_sidecar, run_upstream
from tests.waiting import wait_until

# These tests read the monitoring objects themselves (subscribers, snapshots, the store, the sinks), which
# in the default process mode live in the monitoring process (tests/plane covers that path end to end).
pytestmark = [pytest.mark.anyio, pytest.mark.monitoring_inline]

Scope = dict[str, Any]
KIB = 1 << 10
MIB = 1 << 20
JSON = [(b"content-type", b"application/json")]


def large(request_id: str, size: int) -> Exchange:
    """A KServe V1 exchange whose request carries about ``size`` bytes in one string feature."""
    request = orjson.dumps({"instances": [{"x": 0.5, "note": "n" * size}]})
    return Exchange(
        request_id=request_id,
        timestamp=0.0,
        method="POST",
        path="/v1/models/m:predict",
        request_headers=JSON,
        request_body=request,
        status_code=200,
        response_headers=JSON,
        response_body=b'{"predictions": [1]}',
        latency_seconds=0.001,
        variant="primary",
        strategy="random",
        probability=1.0,
    )


def submit(capture: Capture, exchange: Exchange) -> None:
    capture.submit(
        request_id=exchange.request_id,
        request_id_generated=False,
        timestamp=exchange.timestamp,
        method=exchange.method,
        path=exchange.path,
        request_headers=exchange.request_headers,
        request_body=exchange.request_body,
        status_code=exchange.status_code,
        response_headers=exchange.response_headers,
        response_body=exchange.response_body,
        latency_seconds=exchange.latency_seconds,
        variant=exchange.variant,
        probability=exchange.probability,
    )


def test_an_exchange_is_sized_by_its_bodies_and_headers() -> None:
    small = large("a", 10)
    assert exchange_bytes(large("b", 100 * KIB)) - exchange_bytes(small) == 100 * KIB - 10
    with_header = Exchange(**{**_fields(small), "request_headers": [*JSON, (b"x-pad", b"p" * 50 * KIB)]})
    assert exchange_bytes(with_header) > exchange_bytes(small) + 50 * KIB


def _fields(exchange: Exchange) -> dict[str, Any]:
    return exchange._asdict()


async def test_a_queue_full_in_bytes_drops_large_exchanges_and_counts_them() -> None:
    capture = Capture(RandomSampler(1.0), model="m", max_bytes=MIB, queue_size=10_000, queue_max_bytes=2 * MIB)
    for i in range(40):  # 40 x 256 KiB = 10 MiB offered to a 2 MiB queue that nothing drains
        submit(capture, large(f"r{i}", 256 * KIB))
        assert capture.queue.nbytes <= 2 * MIB
    kept = capture.queue.qsize()
    assert 5 <= kept <= 7  # 2 MiB over 256 KiB and its overhead
    assert capture.metrics.dropped["queue_full"] == 40 - kept
    # Small exchanges still fit in what is left, and are bounded by the count as before.
    assert capture.queue.nbytes + exchange_bytes(large("s", 10)) <= 2 * MIB
    submit(capture, large("small", 10))
    assert capture.queue.qsize() == kept + 1
    taken = capture.queue.get_nowait(10_000)
    assert len(taken) == kept + 1 and capture.queue.nbytes == 0


async def test_one_exchange_larger_than_the_bound_still_passes_an_empty_queue() -> None:
    # A bound set below SIDECAR_CAPTURE_MAX_BYTES must slow capture of big bodies, not stop it.
    handoff = Handoff(maxsize=100, max_bytes=64 * KIB)
    assert handoff.put_nowait(large("big", 100 * KIB))
    assert not handoff.put_nowait(large("second", 10))  # the queue is over its bound: nothing joins
    # The hand-off holds exchanges in their plain form: e[0] is the request id.
    assert [e[0] for e in handoff.get_nowait(64)] == ["big"]
    assert handoff.nbytes == 0 and handoff.put_nowait(large("next", 10))
    with pytest.raises(ValueError, match="max_bytes"):
        Handoff(maxsize=1, max_bytes=0)


async def test_the_worker_takes_a_bounded_amount_of_payload_at_a_time() -> None:
    handoff = Handoff(maxsize=100, max_bytes=64 * MIB)
    for i in range(6):
        assert handoff.put_nowait(large(f"r{i}", 400 * KIB))
    # 1 MiB a batch: two of 400 KiB, never the whole queue at once.
    assert [e[0] for e in handoff.get_nowait(64, MIB)] == ["r0", "r1"]
    assert [e[0] for e in await handoff.get(64, 100 * KIB)] == ["r2"]  # at least one, whatever its size
    assert [e[0] for e in handoff.get_nowait(64)] == ["r3", "r4", "r5"]
    assert handoff.empty() and handoff.nbytes == 0

    capture = Capture(RandomSampler(1.0), model="iris", max_bytes=MIB, queue_size=100)
    worker = kserve_worker(capture)
    calls: list[int] = []

    def subscriber(records: Sequence[PredictionRecord]) -> None:
        calls.append(len(records))

    worker.subscribe(subscriber)
    for i in range(6):
        submit(capture, large(f"r{i}", 400 * KIB))
    task = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: sum(calls) == 6)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Parsed a few at a time, and with no pause between batches while the queue is not empty.
    assert calls == [2, 2, 2]


async def kserve_model(scope: Scope, receive: Any, send: Any) -> None:
    """A KServe V1 model stand-in that reads the whole body and answers one small prediction."""
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": JSON})
    await send({"type": "http.response.body", "body": b'{"predictions": [1]}'})


class Hanging:
    """An HTTP log collector that answers nothing until released: the sink's sends all hang."""

    def __init__(self) -> None:
        self.released = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await read_body(receive)
        await self.released.wait()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class Held:
    """The capture worker stuck, as a slow one would be: its next wait for exchanges blocks until released."""

    def __init__(self, sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
        self.waiting = asyncio.Event()  # the worker has come back for more, and is held
        self.released = asyncio.Event()
        self._get = sidecar.capture.queue.get
        monkeypatch.setattr(sidecar.capture.queue, "get", self._held)

    async def _held(self, limit: int, max_bytes: int | None = None) -> list[ExchangeFields]:
        self.waiting.set()
        await self.released.wait()
        return await self._get(limit, max_bytes)


async def post(port: int, size: int) -> None:
    body = orjson.dumps({"instances": [{"x": 0.5, "note": "n" * size}]})
    response = await raw_request(port, "POST", "/v1/models/m:predict", [("content-type", "application/json")], body)
    assert response.status == 200 and response.body == b'{"predictions": [1]}'


async def test_large_payloads_past_the_byte_bounds_are_dropped_and_counted_by_a_real_sidecar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = Hanging()
    async with run_server(kserve_model) as model_port, run_server(collector) as collector_port:
        env = {
            "SIDECAR_PROTOCOL": "kserve-v1",
            "SIDECAR_CAPTURE_QUEUE_MAX_BYTES": str(2 * MIB),
            "SIDECAR_LOG_SINK": f"http://127.0.0.1:{collector_port}/events",
            "SIDECAR_LOG_QUEUE_MAX_BYTES": str(MIB),
            "SIDECAR_LOG_HTTP_TIMEOUT_SECONDS": "30",
            "SIDECAR_FLUSH_TIMEOUT_SECONDS": "0.5",
        }
        try:
            async with run_sidecar(f"http://127.0.0.1:{model_port}", env) as sidecar:
                await _attack(sidecar, monkeypatch)
        finally:
            # Whatever happened, the collector's hanging requests end, so its server can stop.
            collector.released.set()


async def _attack(sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = sidecar.sinks[0]
    # The sink: its 8 sends hang, so every later batch waits in its queue.
    for i in range(1, 31):
        await post(sidecar.proxy_port, 200 * KIB)
        # One at a time through the capture queue, whose bound is not under test yet.
        await wait_until(lambda n=i: sidecar.capture.metrics.captured == n)
    queued = len(sink._queue)
    assert 3 <= queued <= 5  # 1 MiB over 200 KiB lines
    assert sink.queued_bytes <= MIB
    metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_log_records_total{model="model",outcome="dropped",sink="http"}'] == 30 - 8 - queued

    # The capture queue: the worker is stuck, so every exchange waits in it.
    held = Held(sidecar, monkeypatch)
    try:
        # The worker may be waiting inside the queue already: one more exchange brings it back to the held wait.
        await post(sidecar.proxy_port, 10)
        await wait_until(held.waiting.is_set)
        before = sidecar.capture.queue.qsize()
        for _ in range(40):
            await post(sidecar.proxy_port, 256 * KIB)
        kept = sidecar.capture.queue.qsize() - before
        assert 5 <= kept <= 7  # 2 MiB over 256 KiB bodies
        assert sidecar.capture.queue.nbytes <= 2 * MIB
        metrics = await scrape(sidecar.admin_port)
        assert metrics['mlsidecar_capture_dropped_total{model="model",reason="queue_full"}'] == 40 - kept
    finally:
        held.released.set()
    await wait_until(lambda: sidecar.capture.metrics.captured == 31 + kept)


async def test_bodies_kept_by_running_requests_stay_within_the_in_flight_budget() -> None:
    """The attack: many large requests to a slow model at once, each body kept for capture until it answers.

    Without a total, every running request keeps up to SIDECAR_CAPTURE_MAX_BYTES in each direction, so
    hundreds of them hold far more than the queue's bound. Here 12 requests of 256 KiB share a 1 MiB
    budget: the ones past it are forwarded whole but not captured, and counted as queue_full.
    """
    padding = "x" * (256 * KIB)
    body = orjson.dumps({"instances": [[0.5]], "note": padding})
    env = {
        "SIDECAR_LOG_SINK": "none",
        "SIDECAR_CAPTURE_MAX_BYTES": str(512 * KIB),
        "SIDECAR_CAPTURE_IN_FLIGHT_MAX_BYTES": str(MIB),
    }
    async with run_upstream() as upstream, run_sidecar(upstream.url, env) as sidecar:
        capture = sidecar.capture
        highest = 0
        sampling = True

        async def sample() -> None:
            nonlocal highest
            while sampling:
                highest = max(highest, capture.in_flight_bytes)
                await asyncio.sleep(0.001)

        sampler = asyncio.create_task(sample())
        responses = await asyncio.gather(
            *(raw_request(sidecar.proxy_port, "POST", "/slow?delay=0.5", body=body) for _ in range(12))
        )
        sampling = False
        await sampler
        assert [r.status for r in responses] == [200] * 12
        assert len(upstream.seen) == 12 and all(seen.body == body for seen in upstream.seen)
        given_up = capture.metrics.dropped["queue_full"]
        # 12 x 256 KiB is three times the budget: most requests could not keep their body.
        assert 1 <= given_up <= 12 - 1
        assert 0 < highest <= MIB
        # Every request gave back what it held, captured or not.
        assert capture.in_flight_bytes == 0
        await wait_until(lambda: capture.metrics.captured == 12 - given_up)
        assert capture.metrics.dropped["too_large"] == 0
