"""The upstream client on the wire: raw asyncio servers, so every byte and every close is the test's."""

from __future__ import annotations

import asyncio
import gc
import shutil
import ssl
import subprocess
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sidecar.exceptions import UpstreamConnectError, UpstreamPoolTimeout, UpstreamProtocolError, UpstreamTimeout
from sidecar.upstream.client import UpstreamClient
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The head and the body of one request (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return head, body
            body += chunk[:-2]
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return head, await reader.readexactly(int(line.split(b":")[1]))
    return head, b""


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    """A server calling ``handler(reader, writer, n)`` for its n-th connection; yields the port and the peers seen."""
    peers: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[1])
        try:
            await handler(reader, writer, len(peers))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            # The client went away, or the test is over.
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], peers
    finally:
        server.close()


@asynccontextmanager
async def client_for(
    port: int, *, timeout: float = 2, max_connections: int = 4, pool_timeout: float | None = None
) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(
        f"http://127.0.0.1:{port}",
        timeout=timeout,
        connect_timeout=2,
        max_connections=max_connections,
        pool_timeout=pool_timeout,
    )
    await client.open()
    try:
        yield client
    finally:
        await client.close()


async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while True:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()


async def test_sequential_requests_reuse_one_connection() -> None:
    async with serve(answer_each) as (port, peers), client_for(port) as client:
        for _ in range(5):
            async with client.request("GET", "/", []) as response:
                assert (response.status, await response.read()) == (200, b"ok")
    assert len(peers) == 1


async def test_each_response_on_a_kept_alive_connection_starts_afresh() -> None:
    # One connection, and its one parser and response object, serve every answer in turn:
    # nothing of an answer (headers, coding, an unread body) may show in the next one.
    answers = [
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-a: 1\r\n\r\n2\r\nab\r\n0\r\nx-trailer: t\r\n\r\n",
        b"HTTP/1.1 201 Created\r\ncontent-length: 3\r\nx-b: 2\r\n\r\nxyz",
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nunread",  # 5 bytes of body: "unrea", then "d"
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ]

    async def in_turn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for answer in answers:
            await read_request(reader)
            writer.write(answer.replace(b"unread", b"unrea"))
            await writer.drain()

    async with serve(in_turn) as (port, peers), client_for(port) as client:
        async with client.request("GET", "/", []) as response:
            assert response.status == 200
            assert response.raw_headers == [(b"Transfer-Encoding", b"chunked"), (b"x-a", b"1")]
            assert response.content_length is None
            assert await response.read() == b"ab"
        async with client.request("GET", "/", []) as response:
            assert (response.status, response.raw_headers) == (201, [(b"content-length", b"3"), (b"x-b", b"2")])
            assert await response.read() == b"xyz"
        async with client.request("GET", "/", []) as response:
            assert response.status == 202
            await wait_until(lambda: response._complete, 2)  # the whole answer in, its body left unread
        async with client.request("GET", "/", []) as response:  # the last body, complete but unread, is gone
            assert (response.status, response.raw_headers) == (200, [(b"content-length", b"2")])
            assert await response.read() == b"ok"
    assert len(peers) == 1


async def test_a_lost_connection_is_freed_without_the_garbage_collector() -> None:
    # The connection, its parser and its response refer to one another; the loss of the
    # connection breaks that cycle, so that reference counting frees them as it did before.
    async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()

    gc.disable()
    try:
        async with serve(once_then_close) as (port, _), client_for(port) as client:
            async with client.request("GET", "/", []) as response:
                assert await response.read() == b"ok"
                connection = weakref.ref(response._conn)
            del response
            # The server closed it after the answer; the pool lets go of it when it is lost.
            await wait_until(lambda: connection() is None, 2)
    finally:
        gc.enable()


async def test_an_unread_body_is_never_reused() -> None:
    async def body_later(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(OK[:-2])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(OK[-2:])
            await writer.drain()

    async with serve(body_later) as (port, peers), client_for(port) as client:
        for _ in range(2):
            async with client.request("GET", "/", []) as response:
                assert response.status == 200  # body left unread
    assert len(peers) == 2


async def test_request_framing_and_headers() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(OK)
            await writer.drain()

    async def stream() -> AsyncIterator[bytes]:
        for part in (b"ab", b"", b"c" * 20000, b"d"):
            yield part

    async with serve(record) as (port, _), client_for(port) as client:
        async with client.request("GET", "/p?q=%20", [("x-a", "1")], b"") as r:
            await r.read()
        for method, body in (("POST", b""), ("POST", b"xyz"), ("PUT", None)):
            async with client.request(method, "/p", [("x-a", "1"), ("content-length", "99")], body) as r:
                await r.read()
        async with client.request("POST", "/s", [], stream()) as r:
            await r.read()
        async with client.request("POST", "/s", [("content-length", "20003")], stream()) as r:
            await r.read()
    heads = [head.decode() for head, _ in seen]
    assert heads[0] == f"GET /p?q=%20 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-a: 1\r\n\r\n"
    assert "Content-Length: 0\r\n" in heads[1]
    assert "Content-Length: 3\r\n" in heads[2] and seen[2][1] == b"xyz"
    assert "Content-Length: 0\r\n" in heads[3]
    # A stream of unknown size goes chunked; a declared size goes as it is.
    assert "Transfer-Encoding: chunked\r\n" in heads[4] and "Content-Length" not in heads[4]
    assert "Content-Length: 20003\r\n" in heads[5]
    assert seen[4][1] == seen[5][1] == b"ab" + b"c" * 20000 + b"d"
    for head in heads:
        # The caller's content-length is replaced by the real one, never doubled.
        assert head.lower().count("content-length") <= 1
        assert "content-length: 99\r\n" not in head.lower()  # not a bare "99": the Host port may hold one


async def test_a_stream_shorter_than_its_content_length_is_an_error() -> None:
    async def stream() -> AsyncIterator[bytes]:
        yield b"abc"

    async with serve(answer_each) as (port, _), client_for(port) as client:
        with pytest.raises(UpstreamProtocolError):
            async with client.request("POST", "/", [("content-length", "10")], stream()) as r:
                await r.read()


async def test_crlf_in_a_header_is_refused() -> None:
    async with serve(answer_each) as (port, _), client_for(port) as client:
        with pytest.raises(ValueError):
            async with client.request("GET", "/", [("x-a", "1\r\nx-injected: 2")]):
                pass


async def test_stale_pooled_connection_is_retried_for_idempotent_requests_only() -> None:
    # The first connection answers one request, then closes on the next one
    # without a byte, as an upstream closing an idle connection does just as
    # it is reused. Later connections answer normally.
    async def closes_when_reused(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if n == 1:
            await read_request(reader)
            return
        await answer_each(reader, writer, n)

    for method, retried in (("GET", True), ("POST", False)):
        async with serve(closes_when_reused) as (port, peers), client_for(port) as client:
            async with client.request(method, "/", []) as response:
                await response.read()
            if retried:
                async with client.request(method, "/", []) as response:
                    assert await response.read() == b"ok"
                assert len(peers) == 2
            else:
                # The upstream may have acted on it: not resent, a 502 instead.
                with pytest.raises(UpstreamProtocolError):
                    async with client.request(method, "/", [], b"{}"):
                        pass


async def test_silence_times_out_but_a_slow_steady_stream_does_not() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head, _ = await read_request(reader)
        if b"/silent" in head:
            await asyncio.sleep(5)
            return
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):
            await asyncio.sleep(0.1)
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with serve(slow) as (port, _), client_for(port, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            async with client.request("GET", "/silent", []):
                pass
        assert 0.3 <= time.monotonic() - started < 1.5
        # 0.6 s in total, but never 0.3 s of silence: not cut.
        async with client.request("GET", "/stream", []) as response:
            assert b"".join([chunk async for chunk in response.iter_chunks()]) == b"x" * 6


async def test_connect_failure() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with client_for(port) as client:
        with pytest.raises(UpstreamConnectError):
            async with client.request("GET", "/", []):
                pass


async def test_head_interim_and_read_until_close_responses() -> None:
    async def varied(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head, _ = await read_request(reader)
        if head.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n")
            await writer.drain()
            await read_request(reader)  # the client must not reuse this connection
        elif b"/hints" in head:
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        else:
            writer.write(b"HTTP/1.0 200 OK\r\nx-a: 1\r\n\r\nuntil the end")
            await writer.drain()

    async with serve(varied) as (port, peers), client_for(port) as client:
        async with client.request("HEAD", "/", []) as response:
            assert response.content_length == 4096
            assert await response.read() == b""
        async with client.request("GET", "/hints", []) as response:
            assert response.status == 200
            assert [name for name, _ in response.raw_headers] == [b"content-length", b"connection"]
            assert await response.read() == b"ok"
        async with client.request("GET", "/close", []) as response:
            assert response.content_length is None
            assert await response.read() == b"until the end"
    assert len(peers) == 3


async def test_a_broken_response_is_a_protocol_error() -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
        await writer.drain()

    async with serve(broken) as (port, _), client_for(port) as client:
        with pytest.raises(UpstreamProtocolError):
            async with client.request("GET", "/", []) as response:
                await response.read()


async def test_pool_limit_queues_requests() -> None:
    async def slow_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.05)
            writer.write(OK)
            await writer.drain()

    async def one(client: UpstreamClient) -> bytes:
        async with client.request("GET", "/", []) as response:
            return await response.read()

    async with serve(slow_each) as (port, peers), client_for(port, max_connections=1) as client:
        assert await asyncio.gather(*(one(client) for _ in range(4))) == [b"ok"] * 4
    assert len(peers) == 1


async def test_the_wait_for_a_free_connection_is_bounded() -> None:
    release = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            head, _ = await read_request(reader)
            if b"/held" in head:
                await release.wait()
            writer.write(OK)
            await writer.drain()

    async def one(client: UpstreamClient, target: str) -> bytes:
        async with client.request("GET", target, []) as response:
            return await response.read()

    async with serve(held) as (port, peers), client_for(port, max_connections=1, pool_timeout=0.2) as client:
        holder = asyncio.create_task(one(client, "/held"))
        while not peers:
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        for timeout, bound in ((None, 0.2), (0.1, 0.1)):
            # The pool's own bound, or the request's total timeout when that is sooner.
            started = loop.time()
            with pytest.raises(UpstreamPoolTimeout) as caught:
                async with client.request("GET", "/", [], timeout=timeout):
                    pass
            assert bound <= loop.time() - started < bound + 1
            assert (caught.value.reason, caught.value.status_code) == ("pool", 503)
        assert client._pool is not None and not client._pool.waiters
        release.set()
        assert await holder == b"ok"
        # The connection the holder returns serves the next request.
        assert await one(client, "/") == b"ok"
    assert len(peers) == 1


async def test_cancelled_request_closes_its_connection() -> None:
    closed = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await reader.read()  # returns at the client's close
        closed.set()

    async with serve(hang) as (port, _), client_for(port) as client:
        tasks = len(asyncio.all_tasks())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1), client.request("GET", "/", []):
                pass
        await asyncio.wait_for(closed.wait(), 2)
        assert len(asyncio.all_tasks()) == tasks


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_verifies_the_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer_each(reader, writer, 0)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        client = UpstreamClient(f"https://localhost:{port}", timeout=2, connect_timeout=2, max_connections=2)
        await client.open()
        try:
            # Self-signed: refused by default, as by any client.
            with pytest.raises(UpstreamConnectError):
                async with client.request("GET", "/", []):
                    pass
            assert client._pool is not None
            client._pool.ssl_context = ssl.create_default_context(cafile=str(cert))
            async with client.request("GET", "/", []) as response:
                assert await response.read() == b"ok"
        finally:
            await client.close()
    finally:
        server.close()
