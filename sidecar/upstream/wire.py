"""HTTP/1.1 on the wire: one upstream connection, the response read from it, and the keep-alive pool.

:class:`Connection` is an :class:`asyncio.Protocol` whose bytes go straight to
the current :class:`UpstreamResponse`, which parses them with httptools (in C,
the parser uvicorn uses), refuses a head the client must not get, and wakes
its reader through one future. :class:`Pool` keeps idle connections, caps
open ones and the wait for one, and times every response's silence with one
timer. :mod:`sidecar.upstream.client` builds requests on top; nothing else
imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import httptools

from sidecar.exceptions import UpstreamConnectError, UpstreamPoolTimeout, UpstreamProtocolError, UpstreamTimeout

__all__ = ["Connection", "Pool", "UpstreamResponse"]

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


class UpstreamResponse:
    """A response whose headers have arrived and whose body is read with :meth:`read` or :meth:`iter_chunks`.

    It is also the httptools parser's callback target (the ``on_*`` methods).
    """

    __slots__ = (
        "status",
        "raw_headers",
        "keep_alive",
        "_conn",
        "_head",
        "_coding",
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

    def __init__(self, conn: Connection, head: bool, timeout: float, deadline: float | None) -> None:
        self._conn = conn
        # One parser, and one response object, for every response of the connection: after a
        # response that ended clean (the only kind after which a connection is reused) the parser
        # waits for the next message, and making both afresh per request cost 2% of the proxy's
        # CPU. The parser lives on the connection; the connection drops it when it is lost, so
        # that the cycle through it (connection, parser, response) goes with reference counting.
        conn.parser = httptools.HttpResponseParser(self)
        self._chunks: deque[bytes] = deque()
        self.reset(head, timeout, deadline)

    def reset(self, head: bool, timeout: float, deadline: float | None) -> None:
        """Ready for the next response on the connection; ``head``: it answers a HEAD request."""
        # 0 until the final (non-1xx) headers have arrived.
        self.status = 0
        # Original names and values as bytes, in order, duplicates kept.
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self._head = head
        # The Transfer-Encoding values, joined as a list when repeated; None without one.
        self._coding: bytes | None = None
        self._informational = False
        self._complete = False
        self._error: BaseException | None = None
        self._chunks.clear()  # a body left unread
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
        return self._take()

    def read_nowait(self) -> bytes | None:
        """The whole body if all of it has arrived, else None: :meth:`read` without a coroutine.

        A small response usually arrives with its headers, in one packet.
        """
        return self._take() if self._complete else None

    def _take(self) -> bytes:
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
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

    def on_message_begin(self) -> None:
        if self._complete:
            # More bytes after the end of the response, in the same read: the
            # upstream is out of step with us, so the connection is never reused.
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.status or self._complete:
            # After the final head: the trailer fields of a chunked body.
            # RFC 9110 §6.5.1 forbids merging them into the headers, and once
            # the headers are out they cannot be; they are dropped, so the
            # client gets the same headers however TCP split the response.
            return
        if len(name) == 17 and name.lower() == b"transfer-encoding":
            self._coding = value if self._coding is None else self._coding + b", " + value
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        status = self._conn.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim response (103 Early Hints, a stray 100 Continue):
            # not the answer; its headers are not the final ones.
            self._informational = True
            self.raw_headers = []
            self._coding = None
            return
        if self._coding is not None or not 200 <= status <= 599:
            # Off the common path: the checks of a head that may not be passed on.
            problem = self._unforwardable(status)
            if problem is not None:
                self.fail(UpstreamProtocolError(problem))
                return
        self.status = status
        if self._head:
            # A HEAD response has no body whatever its Content-Length says;
            # the parser cannot be told, so the connection is not reused.
            self._finish(False)
        elif self._waiter is not None:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause_reading()
        if self._waiter is not None:
            self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._complete:
            self._finish(self._conn.parser.should_keep_alive())

    def _unforwardable(self, status: int) -> str | None:
        """Why a final response head cannot be passed on to the client, or None when it can."""
        if not 100 <= status <= 599:
            # 000 would leave the response without a status for ever; 600 and
            # above have no status line in the ASGI server.
            return f"upstream sent status {status:03d}, outside 100-599"
        if status == 101:
            # The Upgrade header is hop-by-hop and never forwarded, so no
            # client asked for this switch, and the proxy relays HTTP only.
            return "upstream switched protocols (101), which the proxy does not relay"
        coding = self._coding
        if coding is not None and coding.strip().lower() != b"chunked":
            # Any other transfer coding would reach the client still applied
            # with the header that names it removed, as nginx also refuses.
            return f"upstream sent Transfer-Encoding {coding.decode('latin-1')!r}; only chunked, once, is relayed"
        return None

    # --- driven by the connection and the timer ---------------------------------------------------

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
            pool = self._conn.pool
            if pool.tick is None:
                pool.start_ticking()

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
        # The pool's tick skips it from now on; there is nothing to unregister.
        self._watched = False

    def _finish(self, keep_alive: bool) -> None:
        self._complete = True
        self.keep_alive = keep_alive
        self._watched = False
        # Nothing more is coming, so reading must not stay paused on a
        # connection that goes back to the pool.
        if self._paused:
            self._resume()
        if self._waiter is not None:
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


class Connection(asyncio.Protocol):
    """One keep-alive connection to the upstream, carrying one request at a time."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        # The connection's response parser, set by UpstreamResponse, and that response.
        self.parser: httptools.HttpResponseParser
        self._last: UpstreamResponse | None = None
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
        if response is None or response._complete:
            # Bytes on an idle connection, or after the end of the response:
            # the upstream is out of step with us.
            if response is not None:
                response.keep_alive = False
            self.abort()
            return
        response._received = response._active = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # HttpParserUpgrade: llhttp stops at a 101's head; on_headers_complete has already refused it.
            if response._complete:
                # Bytes that do not parse after a complete response: its
                # answer stands, but the connection is out of step and closed.
                response.keep_alive = False
                self.abort()
            else:
                response.fail(UpstreamProtocolError(f"invalid response from upstream: {exc}"))

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
        # The end of the cycle through the parser (UpstreamResponse.__init__); nothing is fed any more.
        self._last = None
        with contextlib.suppress(AttributeError):
            del self.parser

    def start_response(self, head: bool, timeout: float, deadline: float | None) -> UpstreamResponse:
        """The response to the request about to be sent, as :attr:`response`; ``head`` for a HEAD request."""
        response = self._last
        if response is None:
            response = self._last = UpstreamResponse(self, head, timeout, deadline)
        else:
            response.reset(head, timeout, deadline)
        self.response = response
        return response

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    # --- used by the request ----------------------------------------------------------------------

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


class Pool:
    """Idle connections (most recent first), a cap on open ones, and a bound on the wait for one."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        limit: int,
        wait_timeout: float,
    ) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.limit = limit
        # A request finds every connection busy for at most this long: without
        # a bound, a few clients that never read their answers would hold the
        # whole pool and every other request would queue for ever.
        self.wait_timeout = wait_timeout
        self.idle: list[Connection] = []
        self.open: set[Connection] = set()  # connecting, busy or idle
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False
        # The one timer that checks the silence of every timed response, while
        # there are any. It finds them through the open connections, so a
        # request costs no registration, only a flag.
        self.tick: asyncio.TimerHandle | None = None

    def start_ticking(self) -> None:
        self.tick = self.loop.call_later(_TICK_SECONDS, self._on_tick)

    def _on_tick(self) -> None:
        self.tick = None
        now = self.loop.time()
        timed = False
        for conn in list(self.open):
            response = conn.response
            if response is not None and response._watched:
                response.check(now)
                timed = True
        if timed:
            self.tick = self.loop.call_later(_TICK_SECONDS, self._on_tick)

    def pop_idle(self, loop: asyncio.AbstractEventLoop) -> Connection | None:
        """The most recent idle connection still fit for reuse, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if (
                not conn.closed
                and transport is not None
                and not transport.is_closing()
                and loop.time() - conn.idle_since < _KEEP_ALIVE_SECONDS
            ):
                return conn
            conn.abort()
            self.forget(conn)
        return None

    async def acquire(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> tuple[Connection, bool]:
        """A connection, and whether it was reused from the pool; :class:`UpstreamPoolTimeout` if none comes free."""
        # Set at the first wait and kept: a request woken for a slot that
        # another took first waits again, but not for longer in all.
        give_up: float | None = None
        patience = self.wait_timeout
        while True:
            if self.closed:
                raise RuntimeError("UpstreamClient is closed")
            conn = self.pop_idle(loop)
            if conn is not None:
                return conn, True
            if len(self.open) < self.limit:
                return await self._connect(loop, deadline), False
            if give_up is None:
                if deadline is not None:
                    patience = max(0.0, min(patience, deadline - loop.time()))
                give_up = loop.time() + patience
            try:
                await self._wait_turn(loop, give_up)
            except TimeoutError:
                raise UpstreamPoolTimeout(
                    f"all {self.limit} connections to {self.host}:{self.port} stayed busy for {patience:g}s"
                ) from None

    async def _wait_turn(self, loop: asyncio.AbstractEventLoop, give_up: float) -> None:
        """Wait until a connection may be free; TimeoutError at ``give_up`` (loop time)."""
        waiter = loop.create_future()
        self.waiters.append(waiter)
        async with asyncio.timeout_at(give_up):
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # Woken for a free slot but leaving: pass the turn on.
                    self._wake_one()
                elif waiter in self.waiters:
                    self.waiters.remove(waiter)
                raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> Connection:
        conn = Connection(self, loop)
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

    def release(self, conn: Connection) -> None:
        conn.response = None
        transport = conn.transport
        if self.closed or conn.closed or transport is None or transport.is_closing():
            conn.abort()
            self.forget(conn)
            return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)
        if self.waiters:
            self._wake_one()

    def forget(self, conn: Connection) -> None:
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
        if self.tick is not None:
            self.tick.cancel()
            self.tick = None
        for conn in list(self.open):
            conn.abort()
            self.forget(conn)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()
