"""SIGTERM on a real ``ml-sidecar serve`` process: drain in-flight requests, then exit 0."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.http import raw_request
from tests.servers import Upstream, serve_process

pytestmark = pytest.mark.anyio


async def test_sigterm_drains_an_in_flight_request_then_exits_0(upstream: Upstream) -> None:
    async with serve_process(upstream.url, {"SIDECAR_SHUTDOWN_TIMEOUT_SECONDS": "10"}) as (process, port, _):
        in_flight = asyncio.create_task(raw_request(port, "GET", "/slow?delay=1.5"))
        while not any(s.path == "/slow" for s in upstream.seen):
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        # New connections are refused while the old request drains.
        with pytest.raises(OSError):
            await raw_request(port, "GET", "/status/200")
        response = await in_flight
        assert response.status == 200
        assert response.body == b'{"predictions": [0.5]}'
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0


async def test_sigterm_cuts_requests_that_outlive_the_shutdown_timeout(upstream: Upstream) -> None:
    async with serve_process(upstream.url, {"SIDECAR_SHUTDOWN_TIMEOUT_SECONDS": "0.5"}) as (process, port, _):
        in_flight = asyncio.create_task(raw_request(port, "GET", "/slow?delay=4"))
        while not any(s.path == "/slow" for s in upstream.seen):
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
        # The client gets an answer that says what happened, not a hang or a bare reset.
        response = await in_flight
        assert response.status == 503
        assert b"shutting down" in response.body
