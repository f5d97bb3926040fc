"""A hostile upstream, scripted byte by byte over raw sockets, against a real sidecar.

Each case answers one request with bytes a model server should never send.
The sidecar either refuses them (a 502 counted as ``protocol``, the only code
recorded for the request) or passes on a correct response. Then a normal
request goes through the same pool, which holds one connection: it must get
its own answer, so that no pool slot is lost and no byte of one response
reaches another. Both requests share one keep-alive client connection, so the
client side's framing is checked too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from sidecar.server import Sidecar
from tests.http import RawResponse, scrape
from tests.servers import run_sidecar

pytestmark = pytest.mark.anyio

# Written with a pause between them, so the sidecar reads them apart.
Script = tuple[bytes, ...]

OK_CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
TRAILER = b"0\r\nset-cookie: session=stolen\r\nx-checksum: 1\r\n\r\n"
_tokens = itertools.count()


class ScriptedUpstream:
    """Answers ``/normal/<token>`` with the token, and any other path with the bytes scripted for it."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                # The sidecar sends GETs without a body: the head is the whole request.
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if path.startswith("/normal/"):
                    token = path.rsplit("/", 1)[1].encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(token), token))
                    continue
                for i, segment in enumerate(self.scripts[path]):
                    if i:
                        await asyncio.sleep(0.05)
                    writer.write(segment)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            # The sidecar closed the connection, or the test is over.
            pass
        finally:
            writer.close()


@asynccontextmanager
async def hostile(scripts: dict[str, Script]) -> AsyncIterator[tuple[ScriptedUpstream, Sidecar]]:
    upstream = ScriptedUpstream()
    upstream.scripts = scripts
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    env = {
        # One connection: a slot lost to a bad response would leave the next request without one.
        "SIDECAR_UPSTREAM_MAX_CONNECTIONS": "1",
        "SIDECAR_UPSTREAM_POOL_TIMEOUT_SECONDS": "1",
        "SIDECAR_UPSTREAM_TIMEOUT_SECONDS": "2",
        "SIDECAR_LOG_SINK": "none",
    }
    try:
        async with run_sidecar(f"http://127.0.0.1:{upstream.port}", env) as sidecar:
            yield upstream, sidecar
    finally:
        server.close()


class Client:
    """One keep-alive connection to the proxy port, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def get(self, path: str) -> RawResponse:
        self.writer.write(f"GET {path} HTTP/1.1\r\nhost: model\r\n\r\n".encode())
        await self.writer.drain()
        return await asyncio.wait_for(self._response(), timeout=5)

    async def _response(self) -> RawResponse:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
        response = RawResponse(int(status_line.split()[1]), headers, b"")
        if response.status in (204, 304):
            return response
        if response.values("transfer-encoding") == ["chunked"]:
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            # uvicorn sends no trailer fields: the blank line ends the body.
            assert await self.reader.readuntil(b"\r\n") == b"\r\n"
            response.body = body
        else:
            (length,) = response.values("content-length")
            response.body = await self.reader.readexactly(int(length))
        return response


@asynccontextmanager
async def client(sidecar: Sidecar) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy_port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()


async def then_a_normal_request(connection: Client, sidecar: Sidecar) -> None:
    """A normal request after the case, through the same pool and client connection, gets its own answer."""
    token = f"token-{next(_tokens)}"
    response = await connection.get(f"/normal/{token}")
    assert (response.status, response.body) == (200, token.encode())
    assert sidecar.metrics.in_flight == 0


async def codes(sidecar: Sidecar) -> dict[str, float]:
    metrics = await scrape(sidecar.admin_port)
    prefix = "mlsidecar_requests_total{"
    return {key: value for key, value in metrics.items() if key.startswith(prefix)}


def _code(code: int) -> str:
    return f'mlsidecar_requests_total{{code="{code}",model="model",variant="primary"}}'


REFUSED: dict[str, Script] = {
    # Statuses outside 100-599: 000 left the request without an answer and its slot
    # taken for ever; the others crashed the ASGI server, which has no status line for them.
    "status-000": (b"HTTP/1.1 000 Nothing\r\ncontent-length: 2\r\n\r\nok",),
    "status-001": (b"HTTP/1.1 001 Low\r\ncontent-length: 2\r\n\r\nok",),
    "status-099": (b"HTTP/1.1 099 Low\r\ncontent-length: 2\r\n\r\nok",),
    "status-600": (b"HTTP/1.1 600 High\r\ncontent-length: 2\r\n\r\nok",),
    "status-999": (b"HTTP/1.1 999 High\r\ncontent-length: 2\r\n\r\nok",),
    # No client asked to switch protocols: the proxy strips Upgrade from every request.
    "switching-protocols": (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nraw",
    ),
    # Transfer codings the proxy does not decode, which would reach the client still applied.
    "chunked-then-gzip": (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n",),
    "gzip-then-chunked": (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",),
    "chunked-twice": (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ),
    "identity": (b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\nok",),
    # Smuggling forms that were already refused, kept so that none regresses.
    "cl-and-te": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",),
    "te-and-cl": (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",),
    "duplicate-cl": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 7\r\n\r\nokLEAK!!",),
    "duplicate-equal-cl": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",),
    "negative-cl": (b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok",),
    "invalid-chunk-size": (OK_CHUNKED + b"zz\r\nok\r\n0\r\n\r\n",),
    "overflowing-chunk-size": (OK_CHUNKED + b"1ffffffffffffffffff\r\nok\r\n0\r\n\r\n",),
    "bare-lf": (b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok",),
    "bare-cr": (b"HTTP/1.1 200 OK\rcontent-length: 2\r\r\nok",),
    "obs-fold": (b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 2\r\n\r\nok",),
    "nul-in-value": (b"HTTP/1.1 200 OK\r\nx-a: a\x00b\r\ncontent-length: 2\r\n\r\nok",),
    "control-in-value": (b"HTTP/1.1 200 OK\r\nx-a: a\x01b\r\ncontent-length: 2\r\n\r\nok",),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_response_that_cannot_be_forwarded_is_a_counted_502(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with hostile({f"/{case}": REFUSED[case]}) as (_, sidecar), client(sidecar) as connection:
        with caplog.at_level(logging.ERROR):
            response = await connection.get(f"/{case}")
        assert response.status == 502
        body = orjson.loads(response.body)
        assert body["error"].startswith("upstream protocol error"), body
        assert body["request_id"] == response.values("x-request-id")[0]
        await then_a_normal_request(connection, sidecar)
        # Only the code the client got is recorded: no 000, 101 or 999 beside the 502.
        assert await codes(sidecar) == {_code(502): 1, _code(200): 1}
        metrics = await scrape(sidecar.admin_port)
    assert metrics['mlsidecar_proxy_errors_total{model="model",reason="protocol"}'] == 1
    # Handled, not escaped: no "Fatal error on transport", no "Exception in ASGI application".
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


BODY = b"2\r\nok\r\n"
TRAILERS: dict[str, Script] = {
    "one-read": (OK_CHUNKED + BODY + TRAILER,),
    "trailer-later": (OK_CHUNKED + BODY, TRAILER),
    "split-inside-a-field": (OK_CHUNKED + BODY + b"0\r\nset-coo", b"kie: session=stolen\r\nx-checksum: 1\r\n\r\n"),
    "headers-then-rest": (OK_CHUNKED, BODY, TRAILER),
}


@pytest.mark.parametrize("segmentation", list(TRAILERS))
async def test_chunked_trailers_never_become_headers(segmentation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with hostile({"/trailers": TRAILERS[segmentation]}) as (_, sidecar), client(sidecar) as connection:
        captured: list[list[tuple[bytes, bytes]]] = []
        submit = sidecar.capture.submit

        def record(**exchange: Any) -> None:
            captured.append(exchange["response_headers"])
            submit(**exchange)

        monkeypatch.setattr(sidecar.capture, "submit", record)
        response = await connection.get("/trailers")
        assert (response.status, response.body) == (200, b"ok")
        # RFC 9110 §6.5.1: not merged into the headers, whatever the TCP segmentation.
        assert response.values("set-cookie") == response.values("x-checksum") == []
        (headers,) = captured
        assert {name for name, _ in headers} == {b"x-request-id"}
        await then_a_normal_request(connection, sidecar)


EXTRA: dict[str, Script] = {
    # Bytes after a complete response, in the same read: the connection is out of step.
    "garbage": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokGARBAGE\r\n",),
    "nul": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\x00",),
    "partial-response": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",),
    "whole-response": (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nLEAK!",
    ),
    "chunked-then-garbage": (OK_CHUNKED + b"2\r\nok\r\n0\r\n\r\nGARBAGE",),
}


@pytest.mark.parametrize("case", list(EXTRA))
async def test_bytes_after_a_complete_response_close_its_connection(case: str) -> None:
    async with hostile({"/extra": EXTRA[case]}) as (upstream, sidecar), client(sidecar) as connection:
        response = await connection.get("/extra")
        assert (response.status, response.body) == (200, b"ok")
        # The normal request gets its own token, never "LEAK!": a new connection carries it.
        await then_a_normal_request(connection, sidecar)
        assert upstream.connections == 2


async def test_bytes_on_an_idle_connection_close_it() -> None:
    late = (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nLEAK!")
    async with hostile({"/late": late}) as (upstream, sidecar), client(sidecar) as connection:
        response = await connection.get("/late")
        assert (response.status, response.body) == (200, b"ok")
        # The stray response arrives while the connection is idle in the pool.
        await asyncio.sleep(0.3)
        await then_a_normal_request(connection, sidecar)
        assert upstream.connections == 2


@pytest.mark.parametrize(
    ("status", "script"),
    [
        (304, b'HTTP/1.1 304 Not Modified\r\netag: "v7"\r\ncontent-length: 120\r\n\r\n'),
        (204, b"HTTP/1.1 204 No Content\r\ncontent-length: 120\r\n\r\n"),
        (204, b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n"),
    ],
)
async def test_no_body_statuses_with_framing_headers_are_forwarded(status: int, script: bytes) -> None:
    async with hostile({"/cached": (script,)}) as (upstream, sidecar), client(sidecar) as connection:
        response = await connection.get("/cached")
        assert response.status == status
        # The Content-Length of a 304 is its 200's: no bytes follow, so it is not passed on,
        # and the response is complete (the next one on this client connection reads right).
        assert response.values("content-length") == response.values("transfer-encoding") == []
        if status == 304:
            assert response.values("etag") == ['"v7"']
        await then_a_normal_request(connection, sidecar)
        assert await codes(sidecar) == {_code(status): 1, _code(200): 1}
        # A response without a body leaves the upstream connection reusable.
        assert upstream.connections == 1
