"""The one HTTP client of the sidecar: HTTP/1.1 keep-alive on asyncio and httptools.

Chosen by measurement (README, "Design notes"; ``benchmarks/``). On the
reference machine aiohttp's ``ClientSession`` spent about 250 µs of CPU per
proxied request, four times uvicorn's own cost, mostly in per-request Python
(header multidicts, payload registry, writer objects, a task per request). A
proxy needs a fraction of that machinery: the request head is written with
the body in one ``write``, the response is parsed in C by the same httptools
uvicorn uses, and the caller is woken by one future. Every outgoing call (the
proxied request, the readiness probe, log sinks, webhooks) goes through one
:class:`UpstreamClient`, so the project carries one HTTP stack, and all
failures become :mod:`sidecar.exceptions` in this module.

What it does, and no more: HTTP/1.1 over TCP or TLS; ``Content-Length`` and
chunked bodies both ways, streamed, with flow control; a keep-alive pool where
a connection goes back only after its response was read to the end; one retry
of an idempotent request whose pooled connection turned out to be closed;
a timeout on silence (before the headers and between body chunks) rather
than on total time, so long server-sent-event streams are not cut; a bound
on the wait for a free connection when all of them are busy.

What the upstream sends is checked before it is passed on: a status outside
100-599 or a 101, a transfer coding other than ``chunked``, and bytes after
the end of a response fail the exchange or close the connection, and chunked
trailers never become headers.

This module builds and sends requests; the connection, the response parser
and the pool, the wire side, are :mod:`sidecar.upstream.wire`.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterable, Sequence
from types import TracebackType
from urllib.parse import unquote, urlsplit

from sidecar.exceptions import UpstreamProtocolError
from sidecar.upstream.wire import Connection, Pool, UpstreamResponse

__all__ = ["UpstreamClient", "UpstreamResponse", "IDEMPOTENT_METHODS"]

Body = bytes | AsyncIterable[bytes] | None

# RFC 9110 §9.2.2: requests a client may retry automatically.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods sent without Content-Length when they have no body; the others get
# "Content-Length: 0", which servers such as nginx require on a bodiless POST.
_BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})
# Request header names the client itself decides on (lower case).
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})
# The start of the request line per method, and the Content-Length line per length, made once:
# formatting them per request was a fifth of serializing one. Lengths come from clients, so
# the table stops growing here; a length not kept is formatted, as any method not listed.
_METHOD_PREFIXES = {m: m.encode() + b" " for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_LENGTH_LINES: dict[int, bytes] = {}
_LENGTH_LINES_KEPT = 4096


class UpstreamClient:
    """A pooled keep-alive client for one base URL.

    Usage::

        client = UpstreamClient(
            "http://127.0.0.1:8080", timeout=30, connect_timeout=5, max_connections=256, pool_timeout=5
        )
        await client.open()
        async with client.request("GET", "/v2/health/ready", []) as response:
            body = await response.read()
        await client.close()
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        pool_timeout: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = self._port == (443 if self._tls else 80)
        self._prefix = parts.path  # prepended to every target, as sent (no trailing "/")
        self._prefix_bytes = parts.path.encode("latin-1")
        fixed = f"Host: {host if default_port else f'{host}:{self._port}'}\r\n"
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            fixed += f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n"
        self._fixed_headers = fixed.encode("latin-1")
        self._fixed_lines = fixed.count("\n")
        # Silence allowed before the response headers and between body chunks
        # (nginx's proxy_read_timeout); a total deadline would cut long
        # server-sent-event streams that are healthy.
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        # The longest wait for a free connection when all max_connections are
        # busy (then UpstreamPoolTimeout). Unset, as long as a connect may take:
        # getting a connection, new or pooled, has one bound.
        self._pool_timeout = connect_timeout if pool_timeout is None else pool_timeout
        self._pool: Pool | None = None

    async def open(self) -> None:
        # Certificates are verified as by any client; built here, once.
        context = ssl.create_default_context() if self._tls else None
        # The loop is kept: on Python 3.11 every asyncio.get_running_loop()
        # is a getpid() system call, and this client runs on one loop.
        loop = asyncio.get_running_loop()
        self._pool = Pool(
            loop, self._host, self._port, context, self._connect_timeout, self._max_connections, self._pool_timeout
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the client was opened on, the only one it may be used from."""
        if self._pool is None:
            raise RuntimeError("UpstreamClient.open() was not awaited")
        return self._pool.loop

    def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: Body = None,
        *,
        timeout: float | None = None,
    ) -> _Request:
        """Send a request; ``async with`` it to get the response once its headers have arrived.

        ``target`` is a raw path with query string, sent after the base URL's
        path with its percent-encoding kept byte for byte.
        ``timeout``, when given, bounds the whole exchange instead of silence.
        The connection goes back to the pool when the block ends with the
        body read to the end; otherwise it is closed, since the rest of an
        unread body cannot be told apart from the next response. The response
        object is the connection's, made ready again for its next request:
        use it only within the block.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("UpstreamClient.open() was not awaited")
        path = self._prefix + target
        parts: list[str] = []
        given_length: str | None = None
        for name, value in headers:
            if name.lower() in _FRAMING:
                # The client library frames the body itself, from what it sends.
                if name.lower() == "content-length":
                    given_length = value.strip()
                continue
            parts += (name, ": ", value, "\r\n")
        # latin-1: ASGI gives header bytes decoded as latin-1, so they go back unchanged.
        lines = "".join(parts).encode("latin-1")
        data, length = self._serialize(method, path.encode("latin-1"), lines, len(parts) >> 2, body, given_length)
        return _Request(pool, method, data, body, length, timeout, self._timeout)

    def forward(
        self, method: str, target: bytes, lines: bytes, count: int, body: Body, content_length: bytes | None
    ) -> _Request:
        """:meth:`request` for the proxy, whose headers are already on the wire's terms.

        ``lines`` holds ``count`` header lines (``name: value\\r\\n``), without
        ``Host``, ``Content-Length`` or ``Transfer-Encoding``, as
        :func:`sidecar.serving.headers.upstream_headers` builds them; ``content_length``
        is the one the client declared, used when ``body`` is a stream.
        ``target`` is the raw path and query.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("UpstreamClient.open() was not awaited")
        data, length = self._serialize(method, self._prefix_bytes + target, lines, count, body, content_length)
        return _Request(pool, method, data, body, length, None, self._timeout)

    def _serialize(
        self, method: str, path: bytes, lines: bytes, count: int, body: Body, given_length: str | bytes | None
    ) -> tuple[bytes, int]:
        """The request line, headers and (when it is bytes) body, and the body length promised (-1: chunked)."""
        length = len(body) if isinstance(body, bytes) else 0 if body is None else None
        framing = b""
        if length is None:
            if given_length is not None and given_length.isdigit():
                # A stream whose size is known: sent as is, checked at the end.
                length = int(given_length)
                framing = b"Content-Length: %d\r\n" % length
            else:
                length = -1
                framing = b"Transfer-Encoding: chunked\r\n"
            count += 1
        elif length or method not in _BODILESS_METHODS or given_length is not None:
            framing = _LENGTH_LINES.get(length, b"")
            if not framing:
                framing = b"Content-Length: %d\r\n" % length
                if len(_LENGTH_LINES) < _LENGTH_LINES_KEPT:
                    _LENGTH_LINES[length] = framing
            count += 1
        start = _METHOD_PREFIXES.get(method) or method.encode("latin-1") + b" "
        head = b"".join((start, path, b" HTTP/1.1\r\n", self._fixed_headers, lines, framing, b"\r\n"))
        # One pass in C instead of a check per header: a CR or LF inside a
        # name, value, method or target would let a caller smuggle a header
        # or a second request. Each of the head's lines ends in the CRLF
        # written for it here or by the caller, so any other CR or LF makes
        # more than two per line: a copy without them is measured, rather
        # than CRs and LFs counted apart (two passes, a third more work).
        expected = count + self._fixed_lines + 2
        if len(head) - len(head.translate(None, b"\r\n")) != 2 * expected:
            raise ValueError("CR or LF in the request line or a header")
        # Head and body in one write: one system call, one packet.
        return (head + body if isinstance(body, bytes) and body else head), length


class _Request:
    """The context manager :meth:`UpstreamClient.request` returns."""

    __slots__ = ("_pool", "_method", "_data", "_body", "_length", "_timeout", "_silence", "_conn", "_upload")

    def __init__(
        self, pool: Pool, method: str, data: bytes, body: Body, length: int, timeout: float | None, silence: float
    ) -> None:
        self._pool = pool
        self._method = method
        # The head, followed by the body when that is bytes.
        self._data = data
        self._body = body
        self._length = length
        self._timeout = timeout
        self._silence = silence
        self._conn: Connection | None = None
        self._upload: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UpstreamResponse:
        method, body, data = self._method, self._body, self._data
        pool = self._pool
        loop = pool.loop
        timeout = self._timeout
        deadline = None if timeout is None else loop.time() + timeout
        silence = self._silence if timeout is None else timeout
        retried = False
        while True:
            # An idle connection without a coroutine of its own: the usual case.
            conn = pool.pop_idle(loop)
            reused = conn is not None
            if conn is None:
                conn, reused = await pool.acquire(loop, deadline)
            self._conn = conn
            response = conn.start_response(method == "HEAD", silence, deadline)
            try:
                conn.write(data)
                if body is None or isinstance(body, bytes):
                    response.start_timing()
                else:
                    self._upload = loop.create_task(_upload(conn, response, body, self._length))
                # Wait for the headers here rather than in a method of the
                # response: a coroutine fewer per request.
                while not response.status:
                    if response._error is not None:
                        raise response._error
                    waiter = response._waiter = loop.create_future()
                    await waiter
                    if response._error is not None:
                        raise response._error
            except UpstreamProtocolError:
                await self._discard()
                # A pooled connection the upstream had closed as we picked it:
                # nothing came back, so an idempotent request is safe to resend,
                # once. A stream can be sent only once; bytes can be sent again.
                if (
                    retried
                    or not reused
                    or response._received
                    or method not in IDEMPOTENT_METHODS
                    or not (body is None or isinstance(body, bytes))
                ):
                    raise
                retried = True
                continue
            except BaseException:
                # Cancelled (our client left, a caller's deadline) or failed:
                # __aexit__ will not run, so the connection is dropped here.
                await self._discard()
                raise
            return response

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn = self._conn
        if conn is None:
            return
        response = conn.response
        upload = self._upload
        if (
            exc_type is None
            and response is not None
            and response._complete
            and response.keep_alive
            and response._error is None
            and (upload is None or upload.done())
        ):
            self._conn = None
            self._pool.release(conn)
            return
        # An unread body, a failure, or a request still being sent: the
        # connection's state is unknown, so it is closed, never reused.
        await self._discard()

    async def _discard(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        response = conn.response
        if response is not None:
            response._stop_timing()
        conn.response = None
        conn.abort()
        self._pool.forget(conn)
        upload = self._upload
        self._upload = None
        if upload is not None and not upload.done():
            upload.cancel()
            # Wait for it here, so that no task outlives the request.
            await asyncio.gather(upload, return_exceptions=True)


async def _upload(conn: Connection, response: UpstreamResponse, body: AsyncIterable[bytes], length: int) -> None:
    """Send a streamed request body, chunked when ``length`` is -1; wait while the socket is full."""
    sent = 0
    try:
        async for chunk in body:
            if not chunk:
                continue
            sent += len(chunk)
            if length < 0:
                conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if len(chunk) < 16384 else b"%x\r\n" % len(chunk))
                if len(chunk) >= 16384:
                    # Large chunks are not copied to add the framing.
                    conn.write(chunk)
                    conn.write(b"\r\n")
            elif sent > length:
                raise UpstreamProtocolError(f"request body longer than its content-length ({length})")
            else:
                conn.write(chunk)
            await conn.drain()
        if length < 0:
            conn.write(b"0\r\n\r\n")
        elif sent != length:
            raise UpstreamProtocolError(f"request body of {sent} bytes, but content-length {length}")
    except Exception as exc:
        # The body's source failed (e.g. our client went away): abort, so the
        # upstream sees a broken request rather than a complete one.
        if response.status:
            conn.abort()
        else:
            response.fail(exc)
        return
    response.start_timing()
