"""End-to-end pass-through: a real client, a real sidecar, a real upstream, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import resource
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from sidecar.server import Sidecar
from tests.http import raw_request, scrape
from tests.servers import Upstream, _pattern, run_sidecar

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("status", [200, 201, 204, 301, 404, 422, 500, 503])
async def test_status_codes_pass_through(upstream: Upstream, sidecar: Sidecar, status: int) -> None:
    response = await raw_request(sidecar.proxy_port, "GET", f"/status/{status}")
    assert response.status == status
    expected = b"" if status == 204 else orjson.dumps({"status": status})
    assert response.body == expected
    if status == 301:
        # Redirects reach the client; the sidecar never follows them itself.
        assert response.values("location") == ["/elsewhere"]
    metrics = await scrape(sidecar.admin_port)
    assert metrics[f'mlsidecar_requests_total{{code="{status}",model="model",variant="primary"}}'] == 1


@pytest.mark.parametrize("size", [0, 1, 1000, 65536, 65537, 3_000_000])
async def test_binary_bodies_round_trip_byte_for_byte(upstream: Upstream, sidecar: Sidecar, size: int) -> None:
    body = _pattern(size)
    response = await raw_request(sidecar.proxy_port, "POST", "/echo", body=body)
    assert response.status == 200
    assert response.body == body
    assert upstream.seen[-1].body == body


async def test_method_path_and_query_are_forwarded_unchanged(upstream: Upstream, sidecar: Sidecar) -> None:
    target = "/echo?b=2&a=%20x&a=y&empty="
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        response = await raw_request(sidecar.proxy_port, method, target, body=b"payload")
        assert response.status == 200
        seen = upstream.seen[-1]
        assert (seen.method, seen.path, seen.query, seen.body) == (method, "/echo", "b=2&a=%20x&a=y&empty=", b"payload")
    # Percent-encoding in the path survives as sent.
    await raw_request(sidecar.proxy_port, "GET", "/echo%2Fencoded/../x")
    assert upstream.seen[-1].path in ("/echo/encoded/../x", "/echo%2Fencoded/../x", "/echo/encoded/x")


async def test_head_request_gets_headers_and_no_body(upstream: Upstream, sidecar: Sidecar) -> None:
    response = await raw_request(sidecar.proxy_port, "HEAD", "/bytes?size=4096")
    assert response.status == 200
    assert response.values("content-length") == ["4096"]
    assert response.body == b""


async def test_chunked_response_streams_through(upstream: Upstream, sidecar: Sidecar) -> None:
    response = await raw_request(sidecar.proxy_port, "GET", "/chunked")
    assert response.status == 200
    assert response.body == b"".join(f"chunk-{i};".encode() for i in range(5))
    assert response.values("content-type") == ["text/plain"]


async def test_sse_first_event_arrives_before_upstream_finishes(upstream: Upstream, sidecar: Sidecar) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
    try:
        writer.write(b"GET /sse HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n")
        await writer.drain()
        received = b""
        while b"data: first\n\n" not in received:
            chunk = await asyncio.wait_for(reader.read(4096), timeout=5)
            assert chunk, "connection closed before the first event"
            received += chunk
        # The upstream is still holding its stream open: the event was not buffered.
        assert not upstream.finished.is_set()
        assert b"data: second" not in received
        upstream.release.set()
        received += await asyncio.wait_for(reader.read(-1), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()
    assert upstream.finished.is_set()
    assert b"text/event-stream" in received
    assert b"data: second\n\n" in received


async def test_request_headers_hygiene(upstream: Upstream, sidecar: Sidecar) -> None:
    await raw_request(
        sidecar.proxy_port,
        "POST",
        "/echo",
        headers=[
            ("Connection", "x-client-hop"),  # raw_request also sends "connection: close"
            ("x-client-hop", "drop me"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "x-checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Forwarded-For", "203.0.113.7"),
            ("Authorization", "Bearer model-token"),
            ("X-Custom", "kept"),
        ],
        body=b"{}",
    )
    seen = dict((k.decode(), v.decode()) for k, v in upstream.seen[-1].headers)
    names = [k.decode() for k, _ in upstream.seen[-1].headers]
    for hop in ("keep-alive", "te", "trailer", "upgrade", "proxy-authorization", "x-client-hop"):
        assert hop not in names, hop
    assert "connection" not in names  # the client's "close" was for its own connection only
    assert seen["authorization"] == "Bearer model-token"
    assert seen["x-custom"] == "kept"
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{sidecar.proxy_port}"
    assert seen["host"] == f"127.0.0.1:{upstream.port}"
    assert len(seen["x-request-id"]) == 32
    for name in ("user-agent", "accept", "accept-encoding", "content-type"):
        # The client library adds nothing the client did not send.
        assert name not in names, name


async def test_request_id_generated_or_passed_through(upstream: Upstream, sidecar: Sidecar) -> None:
    generated = await raw_request(sidecar.proxy_port, "GET", "/echo")
    (request_id,) = generated.values("x-request-id")
    assert dict(upstream.seen[-1].headers)[b"x-request-id"] == request_id.encode()

    passed = await raw_request(sidecar.proxy_port, "GET", "/echo", headers=[("X-Request-Id", "abc-123")])
    assert passed.values("x-request-id") == ["abc-123"]
    assert dict(upstream.seen[-1].headers)[b"x-request-id"] == b"abc-123"
    other = await raw_request(sidecar.proxy_port, "GET", "/echo")
    assert other.values("x-request-id") != [request_id]


async def test_response_headers_hygiene(upstream: Upstream, sidecar: Sidecar) -> None:
    response = await raw_request(sidecar.proxy_port, "GET", "/headers")
    assert response.values("date") == ["Mon, 01 Jan 2024 00:00:00 GMT"]
    assert response.values("server") == ["test-upstream/1.0"]
    assert response.values("set-cookie") == ["a=1", "b=2"]
    assert response.values("x-model-version") == ["7"]
    for hop in ("keep-alive", "proxy-authenticate", "x-upstream-hop"):
        assert response.values(hop) == [], hop
    assert response.values("connection") == ["close"]  # ours, because the client asked to close


async def test_unreachable_upstream_gives_502() -> None:
    # A port that was free a moment ago and has nothing listening now.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with run_sidecar(f"http://127.0.0.1:{port}") as sidecar:
        response = await raw_request(sidecar.proxy_port, "POST", "/v1/models/m:predict", body=b"{}")
        assert response.status == 502
        body = orjson.loads(response.body)
        assert body["request_id"] == response.values("x-request-id")[0]
        assert "connect" in body["error"]
        metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_proxy_errors_total{model="model",reason="connect"}'] == 1
    assert metrics['mlsidecar_requests_total{code="502",model="model",variant="primary"}'] == 1


async def test_slow_upstream_gives_504(upstream: Upstream) -> None:
    async with run_sidecar(upstream.url, {"SIDECAR_UPSTREAM_TIMEOUT_SECONDS": "0.2"}) as sidecar:
        response = await raw_request(sidecar.proxy_port, "GET", "/slow?delay=1", headers=[("x-request-id", "slow-1")])
        assert response.status == 504
        assert orjson.loads(response.body)["request_id"] == "slow-1"
        metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_proxy_errors_total{model="model",reason="timeout"}'] == 1
    assert metrics['mlsidecar_requests_total{code="504",model="model",variant="primary"}'] == 1


async def test_client_disconnect_cancels_upstream_call(upstream: Upstream, sidecar: Sidecar) -> None:
    baseline_tasks = len(asyncio.all_tasks())
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
    writer.write(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
    await writer.drain()
    while not any(s.path == "/hang" for s in upstream.seen):
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    # The sidecar drops its upstream connection, which the upstream observes.
    await asyncio.wait_for(upstream.saw_disconnect.wait(), timeout=5)
    for _ in range(200):
        if sidecar.metrics.in_flight == 0 and len(asyncio.all_tasks()) <= baseline_tasks:
            break
        await asyncio.sleep(0.01)
    assert sidecar.metrics.in_flight == 0
    assert len(asyncio.all_tasks()) <= baseline_tasks
    metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_requests_total{code="499",model="model",variant="primary"}'] == 1
    assert metrics['mlsidecar_proxy_errors_total{model="model",reason="protocol"}'] == 0
    # The pool is healthy afterwards.
    assert (await raw_request(sidecar.proxy_port, "GET", "/status/200")).status == 200


async def test_client_gone_before_the_disconnect_watcher_counts_499(upstream: Upstream, sidecar: Sidecar) -> None:
    # The upstream answers in 20 ms, before any disconnect watcher starts
    # (WATCH_AFTER_SECONDS): the answer goes to a closed connection.
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
    writer.write(b"GET /slow?delay=0.02 HTTP/1.1\r\nhost: x\r\n\r\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    for _ in range(500):
        if sidecar.metrics.in_flight == 0 and any(s.path == "/slow" for s in upstream.seen):
            break
        await asyncio.sleep(0.01)
    # Then one complete exchange on a connection the client closes right after
    # its answer (connection: close): that one is a 200, not a 499.
    assert (await raw_request(sidecar.proxy_port, "GET", "/status/200")).status == 200
    metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_requests_total{code="499",model="model",variant="primary"}'] == 1
    assert metrics['mlsidecar_requests_total{code="200",model="model",variant="primary"}'] == 1


async def test_keep_alive_reuses_upstream_connections(upstream: Upstream, sidecar: Sidecar) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get(f"http://127.0.0.1:{sidecar.proxy_port}/echo") as response:
                assert response.status == 200
                await response.read()
    # One client connection, served sequentially: the sidecar needs one
    # upstream connection, which it keeps alive rather than reopening.
    assert len({s.peer for s in upstream.seen}) == 1


async def _stream(total: int, chunk: bytes) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)


async def test_100mb_body_streams_without_being_held(upstream: Upstream, sidecar: Sidecar) -> None:
    chunk = _pattern(1 << 20)
    total = 100 * len(chunk)
    expected = hashlib.sha256()
    for _ in range(100):
        expected.update(chunk)
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"http://127.0.0.1:{sidecar.proxy_port}/digest",
            data=_stream(total, chunk),
            headers={"content-length": str(total)},
        ) as response:
            assert response.status == 200
            result = orjson.loads(await response.read())
    assert result == {"sha256": expected.hexdigest(), "size": total}
    peak_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib) / 1024
    # Client, sidecar and upstream share this process; holding the body once
    # anywhere would add 100 MiB to the peak.
    assert peak_growth_mib < 50, peak_growth_mib
    metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_request_size_bytes_sum{model="model"}'] == total


async def test_listeners_are_tcp_so_accepted_connections_get_nodelay(sidecar: Sidecar) -> None:
    import socket

    # asyncio sets TCP_NODELAY on accepted sockets only for an IPPROTO_TCP
    # listener; without it every kept-alive response waits ~40 ms on Nagle.
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
    try:
        writer.write(b"GET /status/200 HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        connections = list(sidecar._proxy.server_state.connections)
        assert connections
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_request_that_finds_every_connection_busy_gets_a_503_in_time(upstream: Upstream) -> None:
    env = {"SIDECAR_UPSTREAM_MAX_CONNECTIONS": "1", "SIDECAR_UPSTREAM_POOL_TIMEOUT_SECONDS": "0.3"}
    async with run_sidecar(upstream.url, env) as sidecar:
        holder = asyncio.create_task(raw_request(sidecar.proxy_port, "GET", "/slow?delay=2"))
        while not any(s.path == "/slow" for s in upstream.seen):
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await raw_request(sidecar.proxy_port, "GET", "/status/200", headers=[("x-request-id", "busy-1")])
        waited = loop.time() - started
        # Refused at the pool timeout, not served once the slow request is done.
        assert response.status == 503
        assert 0.3 <= waited < 1.5, waited
        body = orjson.loads(response.body)
        assert body["request_id"] == "busy-1"
        assert body["error"].startswith("upstream pool error"), body
        assert (await holder).status == 200
        # The pool is whole afterwards.
        assert (await raw_request(sidecar.proxy_port, "GET", "/status/200")).status == 200
        metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_proxy_errors_total{model="model",reason="pool"}'] == 1
    assert metrics['mlsidecar_requests_total{code="503",model="model",variant="primary"}'] == 1
    assert metrics['mlsidecar_requests_total{code="200",model="model",variant="primary"}'] == 2


async def test_clients_that_never_read_are_dropped_and_free_the_pool(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    # The attack: as many clients as pooled connections ask for a large answer and
    # never read it. Before the send timeout they held the pool, and every other
    # request waited, for ever.
    env = {
        "SIDECAR_UPSTREAM_MAX_CONNECTIONS": "2",
        "SIDECAR_UPSTREAM_POOL_TIMEOUT_SECONDS": "10",
        "SIDECAR_SEND_TIMEOUT_SECONDS": "0.5",
        "SIDECAR_LOG_SINK": "none",
    }
    size = 16 << 20
    caplog.set_level(logging.ERROR)
    async with run_sidecar(upstream.url, env) as sidecar:
        stalled: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
            writer.write(f"GET /bytes?size={size} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            await writer.drain()
            # The head, then no more reads: the socket buffers fill and the sidecar's writes pause.
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            stalled.append((reader, writer))
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await asyncio.wait_for(raw_request(sidecar.proxy_port, "GET", "/status/200"), timeout=10)
        assert response.status == 200
        assert loop.time() - started < 5
        # The other stalled client is dropped at its own send timeout.
        while sidecar.metrics.in_flight and loop.time() - started < 5:
            await asyncio.sleep(0.01)
        assert sidecar.metrics.in_flight == 0
        for reader, writer in stalled:
            # Dropped, not flushed: what the client can still read ends well short of the body.
            received = 0
            try:
                while chunk := await asyncio.wait_for(reader.read(1 << 20), timeout=5):
                    received += len(chunk)
            except ConnectionError:
                pass
            assert received < size
            writer.close()
        metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_proxy_errors_total{model="model",reason="client_stall"}'] == 2
    # The stalled clients did not get their answers.
    assert metrics['mlsidecar_requests_total{code="499",model="model",variant="primary"}'] == 2
    assert metrics['mlsidecar_requests_total{code="200",model="model",variant="primary"}'] == 1
    # Ended on purpose: the server reports no unfinished response.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
