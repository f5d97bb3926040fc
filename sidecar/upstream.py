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
than on total time, so long server-sent-event streams are not cut.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from types import TracebackType
from typing import cast
from urllib.parse import unquote, urlsplit

import httptools
from yarl import URL

from sidecar.exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout

__all__ = ["UpstreamClient", "UpstreamResponse", "IDEMPOTENT_METHODS"]

Body = bytes | AsyncIterable[bytes] | None

# RFC 9110 §9.2.2: requests a client may retry automatically.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods sent without Content-Length when they have no body; the others get
# "Content-Length: 0", which servers such as nginx require on a bodiless POST.
_BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})
# Unread response body kept per connection before reading from the upstream
# pauses, so a slow client holds back the model instead of filling memory.
_READ_HIGH_WATER = 256 * 1024
# An idle pooled connection older than this is closed rather than reused: the
# upstream's own idle timeout may be about to close it under us.
_KEEP_ALIVE_SECONDS = 15.0
# How often the upstream's silence is checked. A timeout fires between its
# value and its value plus two ticks after the last byte; one timer for the
# whole pool costs less than a timer set and cancelled for every request.
_TICK_SECONDS = 0.05
# Request header names the client itself decides on (lower case).
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})


class UpstreamResponse:
    """A response whose headers have arrived and whose body is read with :meth:`read` or :meth:`iter_chunks`.

    It is also the httptools parser's callback target (the ``on_*`` methods).
    """

    __slots__ = (
        "status",
        "raw_headers",
        "keep_alive",
        "_conn",
        "_parser",
        "_head",
        "_informational",
        "_complete",
        "_error",
        "_chunks",
        "_buffered",
        "_paused",
        "_received",
        "_waiter",
        "_timeout",
        "_deadline",
        "_active",
        "_quiet_since",
        "_watched",
    )

    def __init__(self, conn: _Connection, head: bool, timeout: float, deadline: float | None) -> None:
        # 0 until the final (non-1xx) headers have arrived.
        self.status = 0
        # Original names and values as bytes, in order, duplicates kept.
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self._conn = conn
        self._parser = httptools.HttpResponseParser(self)
        self._head = head
        self._informational = False
        self._complete = False
        self._error: BaseException | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._received = False
        self._waiter: asyncio.Future[None] | None = None
        self._timeout = timeout
        self._deadline = deadline
        # Silence is measured by the pool's watchdog tick, not by a timer per
        # request: data only sets this flag, the tick reads and clears it.
        self._active = False
        self._quiet_since = 0.0
        self._watched = False

    # --- what the caller uses ---------------------------------------------------------------------

    @property
    def content_length(self) -> int | None:
        """The declared body length, or None (chunked, or read until close)."""
        for name, value in self.raw_headers:
            if len(name) == 14 and name.lower() == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    async def read(self) -> bytes:
        """The whole body."""
        while not self._complete:
            # The caller wants it all, so the read-ahead limit does not apply.
            self._resume()
            await self._wait()
        self._raise_error()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return data

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Yield body bytes as they arrive, so streamed responses stay streamed."""
        chunks = self._chunks
        while True:
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                self._resume()
                yield data
            elif self._complete:
                self._raise_error()
                return
            else:
                await self._wait()

    # --- httptools callbacks ----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim response (103 Early Hints, a stray 100 Continue):
            # not the answer; its headers are not the final ones.
            self._informational = True
            self.raw_headers = []
            return
        self.status = status
        if self._head:
            # A HEAD response has no body whatever its Content-Length says;
            # the parser cannot be told, so the connection is not reused.
            self._finish(False)
        else:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._complete:
            self._finish(self._parser.should_keep_alive())

    # --- driven by the connection and the timer ---------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._complete:
            # Bytes after the end of the response: the connection is out of step.
            self.keep_alive = False
            self._conn.abort()
            return
        self._received = True
        self._active = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(UpstreamProtocolError(f"invalid response from upstream: {exc}"))

    def eof(self, exc: BaseException | None) -> None:
        """The connection ended (``exc`` None: a clean close)."""
        if self._complete:
            return
        if exc is None and self.status and not self._head and self._until_close():
            # No Content-Length and not chunked: the body ends with the connection.
            self._finish(False)
            return
        where = "before the response" if not self.status else "during the response body"
        detail = f": {exc}" if exc else ""
        self.fail(UpstreamProtocolError(f"upstream closed the connection {where}{detail}"))

    def fail(self, error: BaseException) -> None:
        if self._complete:
            return
        self._error = error
        self._complete = True
        self._stop_timing()
        self._conn.abort()
        self._wake()

    def start_timing(self) -> None:
        """Start bounding the upstream's silence: the request is fully sent (or it already answered)."""
        if not self._watched and not self._complete:
            self._watched = self._active = True
            self._conn.pool.watch(self)

    def check(self, now: float) -> None:
        """The watchdog's tick: fail the exchange if the upstream has been silent too long."""
        if self._deadline is not None and now >= self._deadline:
            self.fail(UpstreamTimeout(f"no complete answer within {self._timeout:g}s"))
        elif self._active or self._paused:
            # Data since the last tick, or reading paused because our client
            # is slow rather than the upstream: the silence starts again.
            self._active = False
            self._quiet_since = now
        elif now - self._quiet_since >= self._timeout:
            what = "response headers" if not self.status else "the next body chunk"
            self.fail(UpstreamTimeout(f"upstream sent nothing for {self._timeout:g}s, waiting for {what}"))

    def _stop_timing(self) -> None:
        if self._watched:
            self._watched = False
            self._conn.pool.watched.discard(self)

    def _finish(self, keep_alive: bool) -> None:
        self._complete = True
        self.keep_alive = keep_alive
        self._stop_timing()
        # Nothing more is coming, so reading must not stay paused on a
        # connection that goes back to the pool.
        self._resume()
        self._wake()

    def _until_close(self) -> bool:
        for name, value in self.raw_headers:
            lower = name.lower()
            if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        self._raise_error()
        waiter = self._waiter = self._conn.loop.create_future()
        await waiter
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._conn.resume_reading()

    async def wait_headers(self) -> None:
        while not self.status:
            if self._complete:
                self._raise_error()
            await self._wait()


class _Connection(asyncio.Protocol):
    """One keep-alive connection to the upstream, carrying one request at a time."""

    def __init__(self, pool: _Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.idle_since = 0.0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream protocol is always given a stream transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            # Bytes on an idle connection: the upstream is out of step with us.
            self.abort()
            return
        response.feed(data)

    def eof_received(self) -> bool:
        response = self.response
        if response is not None:
            response.eof(None)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self.response
        if response is not None:
            response.eof(exc)
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    # --- used by the request ----------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise UpstreamProtocolError("upstream connection closed before the request was sent")
        transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            waiter = self._drain = self.loop.create_future()
            await waiter
        if self.closed:
            raise UpstreamProtocolError("upstream closed the connection while the request body was sent")

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def abort(self) -> None:
        # abort(), not close(): nothing half-sent may be flushed as if complete.
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _wake_drain(self) -> None:
        waiter = self._drain
        if waiter is not None:
            self._drain = None
            if not waiter.done():
                waiter.set_result(None)


class _Pool:
    """Idle connections (most recent first), and a cap on open ones."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        limit: int,
    ) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.limit = limit
        self.idle: list[_Connection] = []
        self.open: set[_Connection] = set()  # connecting, busy or idle
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False
        # Responses whose upstream silence is being timed, and the one timer
        # that checks them all while there are any.
        self.watched: set[UpstreamResponse] = set()
        self._tick: asyncio.TimerHandle | None = None

    def watch(self, response: UpstreamResponse) -> None:
        self.watched.add(response)
        if self._tick is None:
            self._tick = self.loop.call_later(_TICK_SECONDS, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        now = self.loop.time()
        for response in list(self.watched):
            response.check(now)
        if self.watched:
            self._tick = self.loop.call_later(_TICK_SECONDS, self._on_tick)

    async def acquire(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> tuple[_Connection, bool]:
        """A connection, and whether it was reused from the pool."""
        while True:
            if self.closed:
                raise RuntimeError("UpstreamClient is closed")
            idle = self.idle
            while idle:
                conn = idle.pop()
                if conn.usable and loop.time() - conn.idle_since < _KEEP_ALIVE_SECONDS:
                    return conn, True
                conn.abort()
                self.forget(conn)
            if len(self.open) < self.limit:
                return await self._connect(loop, deadline), False
            waiter = loop.create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # Woken for a free slot but leaving: pass the turn on.
                    self._wake_one()
                elif waiter in self.waiters:
                    self.waiters.remove(waiter)
                raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> _Connection:
        conn = _Connection(self, loop)
        self.open.add(conn)
        timeout = self.connect_timeout
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - loop.time()))
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host if self.ssl_context is not None else None,
                )
        except TimeoutError as exc:
            self.forget(conn)
            raise UpstreamTimeout(f"cannot connect to {self.host}:{self.port} within {timeout:g}s") from exc
        except OSError as exc:  # refused, unreachable, DNS failure, TLS handshake (ssl.SSLError)
            self.forget(conn)
            raise UpstreamConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        except BaseException:
            conn.abort()
            self.forget(conn)
            raise
        return conn

    def release(self, conn: _Connection) -> None:
        conn.response = None
        if self.closed or not conn.usable:
            conn.abort()
            self.forget(conn)
            return
        conn.idle_since = conn.loop.time()
        self.idle.append(conn)
        self._wake_one()

    def forget(self, conn: _Connection) -> None:
        """The connection is gone or going: free its slot."""
        if conn in self.open:
            self.open.discard(conn)
            if conn in self.idle:
                self.idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        self.closed = True
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for conn in list(self.open):
            conn.abort()
            self.forget(conn)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


class UpstreamClient:
    """A pooled keep-alive client for one base URL.

    Usage::

        client = UpstreamClient("http://127.0.0.1:8080", timeout=30, connect_timeout=5, max_connections=256)
        await client.open()
        async with client.request("GET", "/v2/health/ready", []) as response:
            body = await response.read()
        await client.close()
    """

    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float, max_connections: int) -> None:
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
        fixed = f"Host: {host if default_port else f'{host}:{self._port}'}\r\n"
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            fixed += f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n"
        self._fixed_headers = fixed
        self._fixed_lines = fixed.count("\n")
        # Silence allowed before the response headers and between body chunks
        # (nginx's proxy_read_timeout); a total deadline would cut long
        # server-sent-event streams that are healthy.
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._pool: _Pool | None = None

    async def open(self) -> None:
        # Certificates are verified as by any client; built here, once.
        context = ssl.create_default_context() if self._tls else None
        # The loop is kept: on Python 3.11 every asyncio.get_running_loop()
        # is a getpid() system call, and this client runs on one loop.
        loop = asyncio.get_running_loop()
        self._pool = _Pool(loop, self._host, self._port, context, self._connect_timeout, self._max_connections)

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

    def url(self, target: str) -> URL:
        """The absolute URL for a raw path and query, with its percent-encoding kept byte for byte."""
        return URL(self.base_url + target, encoded=True)

    def request(
        self,
        method: str,
        target: str | URL,
        headers: Sequence[tuple[str, str]],
        body: Body = None,
        *,
        timeout: float | None = None,
    ) -> _Request:
        """Send a request; ``async with`` it to get the response once its headers have arrived.

        ``target`` is a raw path with query string, or a prepared :meth:`url`.
        ``timeout``, when given, bounds the whole exchange instead of silence.
        The connection goes back to the pool when the block ends with the
        body read to the end; otherwise it is closed, since the rest of an
        unread body cannot be told apart from the next response.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("UpstreamClient.open() was not awaited")
        path = target.raw_path_qs if isinstance(target, URL) else self._prefix + target
        return _Request(self, pool, method, path, headers, body, timeout)

    def _head(self, method: str, path: str, headers: Sequence[tuple[str, str]], body: Body) -> tuple[bytes, int]:
        """The request line and headers, and the body length promised (-1: chunked)."""
        parts = [method, " ", path, " HTTP/1.1\r\n", self._fixed_headers]
        length = len(body) if isinstance(body, bytes) else 0 if body is None else None
        given_length: str | None = None
        lines = 0
        for name, value in headers:
            if name.lower() in _FRAMING:
                # The client library frames the body itself, from what it sends.
                if name.lower() == "content-length":
                    given_length = value.strip()
                continue
            parts += (name, ": ", value, "\r\n")
            lines += 1
        if length is None:
            if given_length is not None and given_length.isdigit():
                # A stream whose size is known: sent as is, checked at the end.
                length = int(given_length)
                parts.append(f"Content-Length: {length}\r\n")
            else:
                length = -1
                parts.append("Transfer-Encoding: chunked\r\n")
            lines += 1
        elif length or method not in _BODILESS_METHODS or given_length is not None:
            parts.append(f"Content-Length: {length}\r\n")
            lines += 1
        parts.append("\r\n")
        head = "".join(parts)
        # One count in C instead of a check per header: a CR or LF inside a
        # name, value, method or target would let a caller smuggle a header
        # or a second request.
        expected = lines + self._fixed_lines + 2
        if head.count("\n") != expected or head.count("\r") != expected:
            raise ValueError("CR or LF in the request line or a header")
        # latin-1: ASGI gives header bytes decoded as latin-1, so they go back unchanged.
        return head.encode("latin-1"), length


class _Request:
    """The context manager :meth:`UpstreamClient.request` returns."""

    __slots__ = ("_client", "_pool", "_method", "_path", "_headers", "_body", "_timeout", "_conn", "_upload")

    def __init__(
        self,
        client: UpstreamClient,
        pool: _Pool,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]],
        body: Body,
        timeout: float | None,
    ) -> None:
        self._client = client
        self._pool = pool
        self._method = method
        self._path = path
        self._headers = headers
        self._body = body
        self._timeout = timeout
        self._conn: _Connection | None = None
        self._upload: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UpstreamResponse:
        client = self._client
        method, body = self._method, self._body
        head, length = client._head(method, self._path, self._headers, body)
        pool = self._pool
        loop = pool.loop
        deadline = None if self._timeout is None else loop.time() + self._timeout
        silence = client._timeout if self._timeout is None else self._timeout
        # A stream can be sent only once; bytes can be sent again.
        may_retry = method in IDEMPOTENT_METHODS and (body is None or isinstance(body, bytes))
        while True:
            conn, reused = await pool.acquire(loop, deadline)
            self._conn = conn
            response = conn.response = UpstreamResponse(conn, method == "HEAD", silence, deadline)
            try:
                if body is None or isinstance(body, bytes):
                    # Head and body in one write: one system call, one packet.
                    conn.write(head + body if body else head)
                    response.start_timing()
                else:
                    conn.write(head)
                    self._upload = loop.create_task(_upload(conn, response, body, length))
                await response.wait_headers()
            except UpstreamProtocolError:
                await self._discard()
                # A pooled connection the upstream had closed as we picked it:
                # nothing came back, so an idempotent request is safe to resend.
                if not (reused and may_retry and not response._received):
                    raise
                may_retry = False
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


async def _upload(conn: _Connection, response: UpstreamResponse, body: AsyncIterable[bytes], length: int) -> None:
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
