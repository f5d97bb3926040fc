"""The head-holding transport: a response head and its body leave in one write, in order, never lost.

The transport under test wraps a real TCP transport on 127.0.0.1. Between the
two sits a pass-through that records each ``write``/``writelines`` call, so
that the tests can count the writes the real transport received; the bytes
themselves are read back by a real client socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from sidecar.server import Sidecar
from sidecar.serving.coalesce import CoalescingProtocol, HeadHoldingTransport
from sidecar.serving.limits import ClientLimits, ConnectionGuard
from tests.http import raw_request
from tests.servers import Upstream, read_body, run_server
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


def _protocol(name: str) -> Any:
    """uvicorn's protocol, ours, or ours within the proxy port's default client limits (as the sidecar runs it)."""
    if name == "limited":
        return ConnectionGuard("proxy", ClientLimits(64 << 10, 100, 10.0, 512)).protocol(CoalescingProtocol)
    return CoalescingProtocol if name == "coalescing" else name


class _Recording:
    """Forwards to a real transport and records the writes it was asked for."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []
        self.lines = 0  # how many of the writes were writelines calls

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def writelines(self, data: Any) -> None:
        self.writes.append(b"".join(data))
        self.lines += 1
        self.transport.writelines(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _Pair:
    def __init__(self, server: _Recording, held: HeadHoldingTransport, reader: asyncio.StreamReader) -> None:
        self.recording = server
        self.transport = held
        self.reader = reader

    async def received(self, size: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(size), timeout=5)


@pytest.fixture
async def pair() -> AsyncIterator[_Pair]:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.Transport] = loop.create_future()

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(cast(asyncio.Transport, transport))

    server = await loop.create_server(Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    recording = _Recording(await accepted)
    held = HeadHoldingTransport(cast(asyncio.Transport, recording), loop)
    yield _Pair(recording, held, reader)
    writer.close()
    held.close()
    server.close()
    await server.wait_closed()


async def test_a_head_and_its_body_go_out_in_one_write(pair: _Pair) -> None:
    pair.transport.write(HEAD)
    pair.transport.write(b"hello")
    assert pair.recording.writes == [HEAD + b"hello"]
    assert pair.recording.lines == 0
    assert await pair.received(len(HEAD) + 5) == HEAD + b"hello"


async def test_a_head_without_a_body_goes_out_by_the_end_of_the_loop_iteration(pair: _Pair) -> None:
    head = b"HTTP/1.1 204 No Content\r\n\r\n"
    pair.transport.write(head)
    assert pair.recording.writes == []
    assert pair.transport.get_write_buffer_size() == len(head)
    await asyncio.sleep(0)
    assert pair.recording.writes == [head]
    assert await pair.received(len(head)) == head


async def test_heads_held_on_several_connections_all_go_out_by_the_end_of_the_loop_iteration(pair: _Pair) -> None:
    # One flush serves every connection holding a head in an iteration; each still gets its own.
    other = _Recording(pair.recording.transport)
    held = HeadHoldingTransport(cast(asyncio.Transport, other), asyncio.get_running_loop())
    first, second = b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\n\r\n"
    pair.transport.write(first)
    held.write(second)
    assert pair.recording.writes == other.writes == []
    await asyncio.sleep(0)
    assert (pair.recording.writes, other.writes) == ([first], [second])
    # And the next iteration's heads are flushed again, not left behind by the last flush.
    pair.transport.write(first)
    await asyncio.sleep(0)
    assert pair.recording.writes == [first, first]
    assert await pair.received(len(first) * 2 + len(second)) == first + second + first


async def test_later_writes_pass_straight_through_in_order(pair: _Pair) -> None:
    pair.transport.write(HEAD)
    await asyncio.sleep(0)  # a streamed body: its first chunk comes in a later iteration
    pair.transport.write(b"he")
    pair.transport.write(b"llo")
    assert pair.recording.writes == [HEAD, b"he", b"llo"]
    assert await pair.received(len(HEAD) + 5) == HEAD + b"hello"


async def test_an_interim_response_is_not_held(pair: _Pair) -> None:
    # The client waits for 100 Continue before it sends the body.
    pair.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert pair.recording.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


async def test_a_large_body_joins_its_head_without_a_copy(pair: _Pair) -> None:
    body = bytes(range(256)) * 256  # 64 KiB
    pair.transport.write(HEAD)
    pair.transport.write(body)
    assert pair.recording.writes == [HEAD + body]
    assert pair.recording.lines == 1
    assert await pair.received(len(HEAD) + len(body)) == HEAD + body


async def test_close_sends_what_is_held_first(pair: _Pair) -> None:
    pair.transport.write(HEAD)
    pair.transport.close()
    assert pair.recording.writes == [HEAD]
    assert await pair.received(len(HEAD)) == HEAD
    assert await pair.reader.read() == b""


async def test_abort_drops_what_is_held(pair: _Pair) -> None:
    pair.transport.write(HEAD)
    pair.transport.abort()
    await asyncio.sleep(0)
    assert pair.recording.writes == []
    assert await pair.reader.read() == b""


async def test_expect_100_continue_through_the_sidecar(upstream: Upstream, sidecar: Sidecar) -> None:
    body = b'{"instances": [[1.0, 2.0]]}'
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
    writer.write(
        b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
    )
    await writer.drain()
    # The sidecar answers 100 Continue once it reads the body, which it does at once.
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(body)


async def test_head_and_no_content_answers_arrive_whole(upstream: Upstream, sidecar: Sidecar) -> None:
    # Answers without a body: their heads are held, then flushed by the loop.
    assert (await raw_request(sidecar.proxy_port, "HEAD", "/echo")).status == 200
    no_content = await raw_request(sidecar.proxy_port, "GET", "/status/204")
    assert no_content.status == 204
    assert no_content.body == b""


# --- the protocol as a whole: what leaves is what uvicorn's own protocol sends ------------------------


# Each path answers with a head that takes another branch of uvicorn's send().
_HEADS: dict[str, tuple[int, list[tuple[bytes, bytes]], list[bytes]]] = {
    "/length": (200, [(b"content-type", b"application/json"), (b"content-length", b"2")], [b"{}"]),
    "/mixed-case": (201, [(b"Content-Length", b"2"), (b"X-Thing", b"a\tb")], [b"ok"]),
    "/chunked": (200, [(b"transfer-encoding", b"Chunked")], [b"ab", b"cd"]),
    "/no-length": (200, [(b"x-a", b"1")], [b"ab", b"cd"]),
    "/close": (200, [(b"content-length", b"2"), (b"connection", b"keep-alive, Close")], [b"ok"]),
    "/no-content": (204, [(b"x-a", b"1")], [b""]),
    "/not-modified": (304, [], [b""]),
    "/bad-value": (200, [(b"content-length", b"2"), (b"x-a", b"1\x01")], [b"ok"]),
    "/bad-name": (200, [(b"x a", b"1"), (b"content-length", b"2")], [b"ok"]),
    "/bad-length": (200, [(b"content-length", b"3")], [b"ok"]),
}


async def _heads_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive)
    status, headers, chunks = _HEADS[scope["path"]]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    return data


@pytest.mark.parametrize("ours", ["coalescing", "limited"])
async def test_heads_leave_byte_for_byte_as_from_uvicorn(ours: str) -> None:
    config: dict[str, Any] = {"server_header": False, "date_header": False, "headers": [("x-default", "1")]}
    requests = [
        f"{method} {path} HTTP/{version}\r\nhost: x\r\n{connection}\r\n".encode()
        for path in _HEADS
        for method in ("GET", "HEAD")
        for version, connection in (("1.1", "connection: close\r\n"), ("1.0", ""))
    ]
    # Pipelined: the second request waits for the first response, then runs.
    requests.append(
        b"GET /chunked HTTP/1.1\r\nhost: x\r\n\r\nGET /length HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    async with (
        run_server(_heads_app, http="httptools", **config) as plain,
        run_server(_heads_app, http=_protocol(ours), **config) as port,
    ):
        for request in requests:
            assert await _exchange(port, request) == await _exchange(plain, request), request
        # An invalid head is refused in both: the connection closes with nothing sent.
        assert await _exchange(port, b"GET /bad-value HTTP/1.1\r\nhost: x\r\n\r\n") == b""


# --- the keep-alive timeout: the same moment as under uvicorn's own protocol --------------------------

_KEEP_ALIVE = 0.4


async def _sleepy_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive)
    # /sleep/SECONDS answers after that long.
    await asyncio.sleep(float(scope["path"].rsplit("/", 1)[1]))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float) -> None:
    writer.write(f"GET /sleep/{seconds} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert await reader.readexactly(2) == b"ok"


async def _seconds_until_closed(reader: asyncio.StreamReader) -> float:
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    return time.monotonic() - started


@pytest.mark.parametrize("http", ["httptools", "coalescing", "limited"])
async def test_an_idle_connection_closes_at_the_keep_alive_timeout(http: str) -> None:
    async with run_server(_sleepy_app, http=_protocol(http), timeout_keep_alive=_KEEP_ALIVE) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _ask(reader, writer, 0)
        assert _KEEP_ALIVE - 0.1 <= await _seconds_until_closed(reader) < _KEEP_ALIVE + 0.5
        writer.close()


async def test_a_closed_connection_leaves_no_keep_alive_timer_behind() -> None:
    # The limited protocol keeps one keep-alive timer across requests rather than one per request;
    # a connection the client closes must not stay referenced by it until it fires.
    guard = ConnectionGuard("proxy", ClientLimits(64 << 10, 100, 10.0, 512))
    async with run_server(_sleepy_app, http=guard.protocol(CoalescingProtocol), timeout_keep_alive=60) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            await _ask(reader, writer, 0)
        (protocol,) = guard.served
        assert protocol.timeout_keep_alive_task is not None  # idle between requests: the timer runs
        writer.close()
        await wait_until(lambda: not guard.served)
        assert protocol.timeout_keep_alive_task is None


@pytest.mark.parametrize("http", ["httptools", "coalescing", "limited"])
async def test_the_keep_alive_timeout_counts_from_the_last_response(http: str) -> None:
    async with run_server(_sleepy_app, http=_protocol(http), timeout_keep_alive=_KEEP_ALIVE) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Requests at shorter intervals than the timeout, for longer than it in all: the connection stays open.
        for _ in range(4):
            await _ask(reader, writer, 0)
            await asyncio.sleep(_KEEP_ALIVE / 2)
        # A request still running when the timeout would have passed: no timeout while busy.
        await _ask(reader, writer, _KEEP_ALIVE * 1.5)
        assert _KEEP_ALIVE - 0.1 <= await _seconds_until_closed(reader) < _KEEP_ALIVE + 0.5
        writer.close()
