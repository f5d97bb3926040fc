"""Hostile clients on both ports: huge heads, slow heads, idle floods. Each attacks a real sidecar over real sockets.

Before these limits (sidecar.serving.limits), one 64 MB header took the
process from about 110 MB to 450 MB of RSS while every other client waited,
a connection that sent nothing or half a head stayed open for ever, and
idle connections were accepted until the process ran out of file
descriptors, after which nobody was served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from sidecar.config import Settings
from sidecar.server import Sidecar, _check_file_limit
from tests.http import parse_response, raw_request, scrape
from tests.servers import Upstream, run_sidecar, serve_process

pytestmark = pytest.mark.anyio

_HUGE = 64 << 20  # the attack's header: 64 MiB, streamed
_CHUNK = b"a" * (64 << 10)
_ATTACKERS = 3
_ATTACK_SECONDS = 1.5
# The bounds the well-behaved client and the process must keep under attack,
# generous for a shared machine: measured here, p99 was under 30 ms and RSS
# grew by under 2 MiB, with three busy loops on the two cores. Before the
# limits, three attackers took p99 to about 450 ms and RSS up by 50 to 150 MiB
# within the attack's 1.5 s (about 340 MiB per whole 64 MiB header).
_P99_SECONDS = 0.25
_RSS_GROWTH_MIB = 32
_TIMEOUT = 0.5  # SIDECAR_HEADER_TIMEOUT_SECONDS in the slow-head tests


def _rss_mib() -> float:
    """This process's resident set, the in-process sidecar's included."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _closed(samples: dict[str, float], port: str, reason: str) -> float:
    return samples[f'mlsidecar_connections_closed_total{{model="model",port="{port}",reason="{reason}"}}']


@contextlib.asynccontextmanager
async def _sidecar(upstream: Upstream, **env: str) -> AsyncIterator[Sidecar]:
    async with run_sidecar(upstream.url, {"SIDECAR_LOG_SINK": "none", **env}) as sidecar:
        yield sidecar


def _port(sidecar: Sidecar, which: str) -> int:
    return sidecar.proxy_port if which == "proxy" else sidecar.admin_port


async def _well_behaved(sidecar: Sidecar, which: str) -> int:
    """One ordinary request to the port; its status."""
    if which == "proxy":
        response = await raw_request(sidecar.proxy_port, "POST", "/echo", body=b'{"instances": [[1.0]]}')
    else:
        response = await raw_request(sidecar.admin_port, "GET", "/healthz")
    return response.status


async def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the sidecar closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()


# --- item 1: the size of a request head ---------------------------------------------------------------


def _stream_huge_headers(port: int, stop: threading.Event, cut_off: list[int]) -> None:
    """Connect again and again, each time streaming one header of up to 64 MiB, until stopped.

    ``cut_off`` gets how much of each header was sent before the sidecar closed the connection.
    """
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            sent = 0
            try:
                sock.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\nx-huge: ")
                while sent < _HUGE and not stop.is_set():
                    sock.sendall(_CHUNK)
                    sent += len(_CHUNK)
            except OSError:
                cut_off.append(sent)


@contextlib.contextmanager
def _attack(port: int) -> Iterator[list[int]]:
    stop = threading.Event()
    cut_off: list[int] = []
    threads = [
        threading.Thread(target=_stream_huge_headers, args=(port, stop, cut_off), daemon=True)
        for _ in range(_ATTACKERS)
    ]
    for thread in threads:
        thread.start()
    try:
        yield cut_off
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


@pytest.mark.parametrize("which", ["proxy", "admin"])
async def test_huge_headers_are_cut_off_while_others_are_served(upstream: Upstream, which: str) -> None:
    async with _sidecar(upstream) as sidecar:
        assert await _well_behaved(sidecar, which) == 200  # warm: the first request's allocations are not the attack's
        before = peak = _rss_mib()
        latencies: list[float] = []
        with _attack(_port(sidecar, which)) as cut_off:
            deadline = time.monotonic() + _ATTACK_SECONDS
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert await _well_behaved(sidecar, which) == 200
                latencies.append(time.monotonic() - started)
                peak = max(peak, _rss_mib())
                await asyncio.sleep(0.005)
        peak = max(peak, _rss_mib())
        latencies.sort()
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        assert p99 < _P99_SECONDS, f"p99 {p99:.3f}s over {len(latencies)} requests"
        assert peak - before < _RSS_GROWTH_MIB, f"RSS grew from {before:.0f} to {peak:.0f} MiB"
        # Each attacker was cut off, connected again and was cut off again, each
        # time a few MiB in (the limit, the linger, the sockets' buffers).
        assert len(cut_off) > _ATTACKERS
        assert max(cut_off) < _HUGE // 4
        assert _closed(await scrape(sidecar.admin_port), which, "header_too_large") >= len(cut_off)


@pytest.mark.parametrize("which", ["proxy", "admin"])
async def test_a_head_past_the_limit_is_answered_431_and_closed(upstream: Upstream, which: str) -> None:
    async with _sidecar(upstream, SIDECAR_MAX_HEADER_BYTES="4096") as sidecar:
        port = _port(sidecar, which)
        head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: "
        answer = await _exchange(port, head + b"a" * 8192 + b"\r\n\r\n")
        response = parse_response(answer)
        assert response.status == 431
        assert response.values("connection") == ["close"]
        assert response.body == b"Request Header Fields Too Large"
        # Just within the limit, the same request is served.
        fits = head + b"a" * (4096 - len(head) - 100) + b"\r\nconnection: close\r\n\r\n"
        assert len(fits) < 4096
        assert parse_response(await _exchange(port, fits)).status in (200, 404)
        assert _closed(await scrape(sidecar.admin_port), which, "header_too_large") == 1


@pytest.mark.parametrize("which", ["proxy", "admin"])
async def test_too_many_header_fields_are_answered_431(upstream: Upstream, which: str) -> None:
    async with _sidecar(upstream, SIDECAR_MAX_HEADERS="10") as sidecar:
        port = _port(sidecar, which)

        def request(fields: int) -> bytes:
            lines = [b"GET /healthz HTTP/1.1", b"host: x", b"connection: close"]
            lines += [b"x-field-%d: 1" % i for i in range(fields - 2)]
            return b"\r\n".join(lines) + b"\r\n\r\n"

        assert parse_response(await _exchange(port, request(11))).status == 431
        assert parse_response(await _exchange(port, request(10))).status in (200, 404)
        assert _closed(await scrape(sidecar.admin_port), which, "too_many_headers") == 1


async def test_a_body_does_not_count_against_the_head_limit(upstream: Upstream) -> None:
    async with _sidecar(upstream, SIDECAR_MAX_HEADER_BYTES="1024") as sidecar:
        body = bytes(range(256)) * 4096  # 1 MiB, most of it in the head's own reads
        response = await raw_request(sidecar.proxy_port, "POST", "/echo", body=body)
        assert response.status == 200
        assert response.body == body
        # Pipelined requests in one write, each head within the limit, whatever the write's size.
        one = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 600\r\n\r\n" + b"b" * 600
        last = b"GET /status/204 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        answer = await _exchange(sidecar.proxy_port, one * 3 + last)
        assert answer.count(b"HTTP/1.1 200 ") == 3
        assert answer.count(b"HTTP/1.1 204 ") == 1
        assert _closed(await scrape(sidecar.admin_port), "proxy", "header_too_large") == 0


# --- item 4: the time to send a head ------------------------------------------------------------------


async def _dribble(port: int, data: bytes, interval: float) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time; what the sidecar answered before closing, and after how long."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def trickle() -> None:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)

    sending = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        return answer, time.monotonic() - started
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()


@pytest.mark.parametrize("which", ["proxy", "admin"])
async def test_a_connection_that_sends_nothing_is_closed_at_the_head_timeout(upstream: Upstream, which: str) -> None:
    async with _sidecar(upstream, SIDECAR_HEADER_TIMEOUT_SECONDS=str(_TIMEOUT)) as sidecar:
        answer, seconds = await _dribble(_port(sidecar, which), b"", 0)
        assert answer == b""  # nothing was asked, so nothing is answered
        assert _TIMEOUT - 0.1 <= seconds < _TIMEOUT + 2
        assert _closed(await scrape(sidecar.admin_port), which, "header_timeout") == 1


@pytest.mark.parametrize("which", ["proxy", "admin"])
async def test_slowloris_is_answered_408_and_closed(upstream: Upstream, which: str) -> None:
    async with _sidecar(upstream, SIDECAR_HEADER_TIMEOUT_SECONDS=str(_TIMEOUT)) as sidecar:
        # Half a head, a byte every 50 ms: it would take seconds to finish, and never does.
        head = b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-slow: " + b"s" * 200
        answer, seconds = await _dribble(_port(sidecar, which), head, 0.05)
        assert parse_response(answer).status == 408
        assert _TIMEOUT - 0.1 <= seconds < _TIMEOUT + 2
        assert _closed(await scrape(sidecar.admin_port), which, "header_timeout") == 1


async def test_a_slow_later_head_on_a_kept_alive_connection_is_timed_from_its_first_byte(upstream: Upstream) -> None:
    async with _sidecar(upstream, SIDECAR_HEADER_TIMEOUT_SECONDS=str(_TIMEOUT)) as sidecar:
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
        try:
            # An idle kept-alive connection is the keep-alive timeout's (75 s), not the head timeout's.
            for _ in range(2):
                writer.write(b"GET /status/204 HTTP/1.1\r\nhost: x\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
                assert head.startswith(b"HTTP/1.1 204 ")
                await asyncio.sleep(_TIMEOUT * 2)
            # A head begun and never finished: timed from its first byte.
            writer.write(b"GET /status/204 HTTP/1.1\r\nhost:")
            started = time.monotonic()
            answer = await asyncio.wait_for(reader.read(), timeout=5)
            assert parse_response(answer).status == 408
            assert _TIMEOUT - 0.1 <= time.monotonic() - started < _TIMEOUT + 2
        finally:
            writer.close()


async def test_a_response_slower_than_the_head_timeout_is_not_cut(upstream: Upstream) -> None:
    async with _sidecar(upstream, SIDECAR_HEADER_TIMEOUT_SECONDS=str(_TIMEOUT)) as sidecar:
        # The head timer stops when the head is complete; a slow model is the upstream timeout's business.
        slow = await raw_request(sidecar.proxy_port, "GET", f"/slow?delay={_TIMEOUT * 3}")
        assert slow.status == 200
        # And a slow body behind a whole head is no slow head either.
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
        try:
            writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\nconnection: close\r\n\r\nab")
            await asyncio.sleep(_TIMEOUT * 2)
            writer.write(b"cd")
            response = parse_response(await asyncio.wait_for(reader.read(), timeout=5))
        finally:
            writer.close()
        assert response.status == 200
        assert response.body == b"abcd"
        assert _closed(await scrape(sidecar.admin_port), "proxy", "header_timeout") == 0


# --- item 4: how many connections ---------------------------------------------------------------------


async def _open_idle(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    connections = []
    for _ in range(count):
        connections.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0)  # let the sidecar accept each in turn, so that their order is known
    return connections


@pytest.mark.parametrize("which", ["proxy", "admin"])
async def test_an_idle_flood_past_the_limit_closes_the_longest_idle_and_serves_a_newcomer(
    upstream: Upstream, which: str
) -> None:
    limit = 20
    env = {"SIDECAR_MAX_CONNECTIONS": str(limit), "SIDECAR_ADMIN_MAX_CONNECTIONS": str(limit)}
    async with _sidecar(upstream, **env) as sidecar:
        flood = await _open_idle(_port(sidecar, which), 3 * limit)
        try:
            assert await _well_behaved(sidecar, which) == 200
            await asyncio.sleep(0.2)  # for the closes to arrive; the sidecar sends nothing before them
            closed = [reader.at_eof() for reader, _ in flood]
            # The longest idle made room, each newcomer's in turn; the newest stay open.
            assert closed == [True] * (2 * limit + 1) + [False] * (limit - 1)
            samples = await scrape(sidecar.admin_port)
            assert _closed(samples, which, "evicted") == 2 * limit + 1
            assert samples[f'mlsidecar_connections_open{{model="model",port="{which}"}}'] <= limit
        finally:
            for _, writer in flood:
                writer.close()


async def test_a_request_past_the_limit_when_none_is_idle_gets_503(upstream: Upstream) -> None:
    async with _sidecar(upstream, SIDECAR_MAX_CONNECTIONS="4") as sidecar:
        busy = [asyncio.create_task(raw_request(sidecar.proxy_port, "GET", "/slow?delay=1")) for _ in range(4)]
        while sum(seen.path == "/slow" for seen in upstream.seen) < 4:
            await asyncio.sleep(0.01)
        refused = await raw_request(sidecar.proxy_port, "GET", "/status/200")
        assert refused.status == 503
        assert refused.values("connection") == ["close"]
        assert [response.status for response in await asyncio.gather(*busy)] == [200] * 4
        # Once there is room again, the next request is served.
        assert (await raw_request(sidecar.proxy_port, "GET", "/status/200")).status == 200
        assert _closed(await scrape(sidecar.admin_port), "proxy", "over_limit") == 1


@pytest.mark.slow
async def test_an_idle_flood_cannot_exhaust_the_file_descriptors(upstream: Upstream) -> None:
    # A real process with 256 file descriptors, and more idle connections than that on each port.
    command = ("sh", "-c", 'ulimit -n 256 && exec "$0" -m sidecar "$@"', sys.executable)
    env = {
        "SIDECAR_MAX_CONNECTIONS": "100",
        "SIDECAR_ADMIN_MAX_CONNECTIONS": "16",
        "SIDECAR_UPSTREAM_MAX_CONNECTIONS": "8",
        "SIDECAR_LOG_SINK": "none",
    }
    async with serve_process(upstream.url, env, command=command) as (_, proxy_port, admin_port):
        flood = [*await _open_idle(proxy_port, 300), *await _open_idle(admin_port, 300)]
        try:
            proxied = await asyncio.wait_for(raw_request(proxy_port, "GET", "/status/200"), timeout=5)
            assert proxied.status == 200
            health = await asyncio.wait_for(raw_request(admin_port, "GET", "/healthz"), timeout=5)
            assert health.status == 200
        finally:
            for _, writer in flood:
                writer.close()


@pytest.mark.parametrize(("soft", "warned"), [(256, True), (1024, False), (resource.RLIM_INFINITY, False)])
def test_a_descriptor_limit_below_what_the_limits_need_is_warned_of(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, soft: int, warned: bool
) -> None:
    # The defaults (512 + 64 client connections, a pool of 256) fit the common 1024.
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, resource.RLIM_INFINITY))
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        _check_file_limit(Settings.from_env({"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:8080"}))
    assert ("SIDECAR_MAX_CONNECTIONS" in caplog.text) == warned
