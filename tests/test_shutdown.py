"""SIGTERM on a real ``ml-sidecar serve`` process: drain in-flight requests, then exit 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.http import raw_request
from tests.servers import Upstream

pytestmark = pytest.mark.anyio

LISTENING = re.compile(rb"proxying http://[^:]+:(\d+) -> .*admin on http://[^:]+:(\d+)")


@asynccontextmanager
async def serve(upstream: Upstream, shutdown_timeout: float) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    env = {
        **os.environ,
        "SIDECAR_UPSTREAM_URL": upstream.url,
        "SIDECAR_LISTEN_HOST": "127.0.0.1",
        "SIDECAR_LISTEN_PORT": "0",
        "SIDECAR_ADMIN_HOST": "127.0.0.1",
        "SIDECAR_ADMIN_PORT": "0",
        "SIDECAR_SHUTDOWN_TIMEOUT_SECONDS": str(shutdown_timeout),
        "SIDECAR_STATE_DIR": tempfile.mkdtemp(prefix="sidecar-state-"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        port = 0
        while not port:
            line = await asyncio.wait_for(process.stderr.readline(), timeout=15)
            assert line, "ml-sidecar exited before listening"
            if match := LISTENING.search(line):
                port = int(match.group(1))
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_sigterm_drains_an_in_flight_request_then_exits_0(upstream: Upstream) -> None:
    async with serve(upstream, shutdown_timeout=10) as (process, port):
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
    async with serve(upstream, shutdown_timeout=0.5) as (process, port):
        in_flight = asyncio.create_task(raw_request(port, "GET", "/slow?delay=4"))
        while not any(s.path == "/slow" for s in upstream.seen):
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
        # The client gets an answer that says what happened, not a hang or a bare reset.
        response = await in_flight
        assert response.status == 503
        assert b"shutting down" in response.body
