"""Bounds on what a client can hold of the sidecar: the size of a request head, the time to send it, a connection.

uvicorn's httptools protocol has none of them. httptools joins a header's
value by concatenation as it arrives, so one 200 MB header costs gigabytes
and seconds of CPU while every other client waits; a connection that sends
nothing, or half a head, stays open for ever; and connections are accepted
until the process runs out of file descriptors. :class:`LimitedProtocol` is
that protocol held to one port's :class:`ClientLimits`:

- **Head size.** The request line and headers are counted as their bytes
  arrive, and the parser is fed no more than ``max_header_bytes`` of a head.
  A head that has not ended by then is answered ``431 Request Header Fields
  Too Large`` and its connection is closed, with at most the limit of it
  buffered. The same for a head with more than ``max_headers`` fields.
- **Head time.** A connection must send its first whole head within
  ``header_timeout`` seconds of connecting, and each later head within that
  long of its first byte. A head cut short is answered ``408 Request
  Timeout``; a connection that sent nothing is closed without a word. Between
  requests an idle connection is bounded, as before, by uvicorn's keep-alive
  timeout; while a request runs, no head timer runs.
- **Connections.** When a new connection takes the port past
  ``max_connections``, the connection idle the longest (waiting for a head:
  kept alive between requests, just opened, or sending a slow head) is closed
  to make room, as nginx reuses idle keep-alive connections when it runs out.
  When no other connection is idle, every connection having a request in
  progress, the newcomer's request gets uvicorn's own ``503 Service
  Unavailable`` (its ``limit_concurrency``) and the connection is closed.

After a 431 or a 408 the sidecar half-closes and reads on, discarding, for up
to ``_LINGER_SECONDS`` or ``_LINGER_BYTES``: closing a socket with unread
bytes sends a reset, which can destroy the answer before the client reads it
(the "lingering close" of Apache and nginx).

Each of these is counted by reason in the port's :class:`ConnectionGuard`,
and :class:`ConnectionMetrics` serves the counts.

Usage::

    guard = ConnectionGuard("proxy", ClientLimits(65536, 100, 10.0, 512))
    uvicorn.Config(app, http=guard.protocol(CoalescingProtocol))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from sidecar.prometheus import PREFIX

__all__ = ["REASONS", "ClientLimits", "ConnectionGuard", "ConnectionMetrics", "LimitedProtocol"]

# Why the sidecar closed a client's connection, as counted; see the module doc.
REASONS: tuple[str, ...] = ("header_too_large", "too_many_headers", "header_timeout", "evicted", "over_limit")

# The parser callbacks (and data_received) of the base protocol that LimitedProtocol wraps.
_WRAPPED = ("data_received", "on_header", "on_headers_complete", "on_body", "on_message_complete")

_LINGER_SECONDS = 1.0
# uvloop's timers count whole milliseconds: a keep-alive timeout this close to its end is due.
_TIMER_RESOLUTION = 1e-3
_LINGER_BYTES = 1 << 20


def _answer(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(message)).encode() + b"\r\nconnection: close\r\n\r\n" + message
    )


_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"Request Header Fields Too Large")
_TIMED_OUT = _answer(b"408 Request Timeout", b"Request Timeout")


@dataclass(frozen=True)
class ClientLimits:
    """What one port allows each client, and how many clients; see the module doc.

    Usage::

        ClientLimits(max_header_bytes=64 * 1024, max_headers=100, header_timeout=10.0, max_connections=512)
    """

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    max_connections: int


class ConnectionGuard:
    """One port's limits, its open and idle connections, and how often each limit closed one.

    ``served`` holds the connections open and not being closed by a limit: a
    connection closed to make room leaves it at once, not when the event loop
    reports it lost, so that the newcomer it made room for is not refused.
    ``idle`` is a dict used as an ordered set: its order is the order in which
    the connections became idle, so the first is the one to close for room.
    Only the event loop's thread touches them, so they need no lock.

    Usage::

        guard = ConnectionGuard("admin", limits)
        uvicorn.Config(app, http=guard.protocol())
        guard.closed["header_timeout"], len(guard.served)
    """

    def __init__(self, port: str, limits: ClientLimits) -> None:
        self.port = port
        self.limits = limits
        self.served: set[LimitedProtocol] = set()
        self.idle: dict[LimitedProtocol, None] = {}
        self.closed = dict.fromkeys(REASONS, 0)

    def protocol(self, base: type[HttpToolsProtocol] = HttpToolsProtocol) -> type[LimitedProtocol]:
        """The protocol class to give uvicorn as ``http``: ``base`` (httptools' or a subclass) within these limits."""
        # The base's methods that LimitedProtocol wraps, looked up once here rather than through
        # super() in every call: they run several times per request (on_header once per field),
        # and super() cost about 1,200 instructions a call, 3% of the proxy's CPU in all.
        namespace: dict[str, Any] = {"guard": self, **{f"_base_{name}": getattr(base, name) for name in _WRAPPED}}
        return cast(type[LimitedProtocol], type(f"Limited{base.__name__}", (LimitedProtocol, base), namespace))

    def make_room(self) -> None:
        """Close the connection idle the longest, if any is idle."""
        victim = next(iter(self.idle), None)
        if victim is not None:
            self.closed["evicted"] += 1
            self.forget(victim)
            victim.transport.close()

    def forget(self, connection: LimitedProtocol) -> None:
        """``connection`` is closing: no longer served, and not idle."""
        self.served.discard(connection)
        self.idle.pop(connection, None)


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol within its port's :class:`ConnectionGuard` (the module doc says how).

    A class per port, each bound to its guard, is made by :meth:`ConnectionGuard.protocol`.

    Usage::

        protocol = ConnectionGuard("proxy", limits).protocol()
        issubclass(protocol, LimitedProtocol)  # True
    """

    guard: ClassVar[ConnectionGuard]
    # The base protocol's own, set by ConnectionGuard.protocol (see there).
    _base_data_received: ClassVar[Callable[[HttpToolsProtocol, bytes], None]]
    _base_on_header: ClassVar[Callable[[HttpToolsProtocol, bytes, bytes], None]]
    _base_on_headers_complete: ClassVar[Callable[[HttpToolsProtocol], None]]
    _base_on_body: ClassVar[Callable[[HttpToolsProtocol, bytes], None]]
    _base_on_message_complete: ClassVar[Callable[[HttpToolsProtocol], None]]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # The guard decides when a request is past the limit (on_headers_complete), not uvicorn.
        self.limit_concurrency = None
        self._in_head = True  # waiting for a request head, or reading one
        self._head_bytes = 0
        self._heads = 0  # heads completed on this connection
        self._fields = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refusal: str | None = None  # a limit a parser callback found exceeded
        self._discarded: int | None = None  # bytes read after a refusal; None before one
        # Loop time since which the connection has waited for its next request; None while one is on its way.
        self._idle_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        guard.served.add(self)
        if len(guard.served) > guard.limits.max_connections:
            guard.make_room()
        guard.idle[self] = None
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarded is not None:
            self._discarded += len(data)
            if self._discarded > _LINGER_BYTES:
                self.transport.close()
            return
        while self._in_head:
            room = self.guard.limits.max_header_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                break
            # The parser gets no more of a head than the limit: either the head
            # ends within it, or the client is refused with no more buffered.
            heads = self._heads
            self._head_bytes += room
            if room:
                self._feed(data[:room])
            if self.transport.is_closing() or self._discarded is not None:
                return  # a malformed head, answered 400 by uvicorn, or too many fields
            if self._heads == heads:
                self._refuse("header_too_large", _TOO_LARGE)
                return
            data = data[room:]  # the rest is the request's body, or a pipelined request
        self._feed(data)
        if self._head_bytes and self._in_head and self._timer is None and self._discarded is None and not self._busy():
            # A later head begun in this read and not finished in it starts its clock now, at its
            # first byte's loop time. Armed after the parser rather than before: most heads arrive
            # whole, and a timer set and cancelled for each of them was 3% of the proxy's CPU.
            self._arm()

    def _feed(self, data: bytes) -> None:
        self._base_data_received(data)
        if self._refusal is not None and self._discarded is None and not self.transport.is_closing():
            self._refuse(self._refusal, _TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self.guard.limits.max_headers:
            # Not raised: uvicorn would log it as an invalid request and answer 400.
            # data_received answers once the parser returns; until then nothing of
            # this request reaches the app. Counted per field, so that a head of many
            # tiny fields never holds more than the limit of them.
            self._refusal = "too_many_headers"
        if self._refusal is None:
            self._base_on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refusal is not None:
            return
        self._in_head = False
        self._head_bytes = self._fields = 0
        self._heads += 1
        timer = self._timer
        if timer is not None:  # _disarm(), a call fewer per request
            timer.cancel()
            self._timer = None
        guard = self.guard
        guard.idle.pop(self, None)
        # Past the limit still (no connection was idle when this one came): uvicorn
        # answers 503 itself, in its own words, when the count reaches its limit_concurrency.
        over = len(guard.served) > guard.limits.max_connections
        if over:
            guard.closed["over_limit"] += 1
        self.limit_concurrency = 0 if over else None
        self._base_on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            self._base_on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is None:
            self._base_on_message_complete()
            self._in_head = True

    def on_response_complete(self) -> None:
        if self.pipeline or self.transport.is_closing():
            # The next pipelined request starts, or the connection is going: not idle either way.
            super().on_response_complete()
            return
        # uvicorn's own, but that its keep-alive timer is set only when none is pending
        # (see _unset_keepalive_if_required).
        self.server_state.total_requests += 1
        self.flow.resume_reading()
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        self.guard.idle[self] = None  # idle again, so the last to be closed for room
        if self._head_bytes:
            # The next head began while this response was running: it is timed
            # from now, and the connection is not idle, so no keep-alive timer.
            self._unset_keepalive_if_required()
            self._arm()

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this when bytes arrive, and there cancels its keep-alive timer, to set a
        # new one when the response is complete: a timer made and cancelled per request, 2% of
        # the proxy's CPU. Here the pending timer stays and only the idle mark goes; when it
        # fires, timeout_keep_alive_handler sets it again for what is left of the timeout.
        self._idle_since = None

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        since = self._idle_since
        if since is None:
            return  # a request is on its way; on_response_complete sets the timer again
        left = since + self.timeout_keep_alive - self.loop.time()
        if left > _TIMER_RESOLUTION:
            # Busy meanwhile: the connection has been idle only since its last response.
            self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)
        else:
            super().timeout_keep_alive_handler()

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._timer = self.loop.call_later(self.guard.limits.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return  # closed meanwhile, its loss not yet reported
        if self._head_bytes:
            self._refuse("header_timeout", _TIMED_OUT)
        else:
            self.guard.closed["header_timeout"] += 1
            self.guard.forget(self)
            self.transport.close()

    def _refuse(self, reason: str, answer: bytes) -> None:
        """Answer with ``answer``, half-close, and close after the linger (module doc)."""
        self.guard.closed[reason] += 1
        self.guard.forget(self)
        self._disarm()
        self._discarded = 0
        if self._busy():
            # A pipelined head, refused while the response before it is being
            # sent: that response is the connection's last, and its end closes it.
            self.cycle.keep_alive = False
            return
        self.transport.write(answer)
        self.transport.write_eof()
        self._timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)


class ConnectionMetrics(Collector):
    """The guards' counts as metric families, read at scrape time.

    Usage::

        registry.register(ConnectionMetrics("iris", [proxy_guard, admin_guard]))
    """

    def __init__(self, model: str, guards: Iterable[ConnectionGuard]) -> None:
        self._model = model
        self._guards = tuple(guards)

    def collect(self) -> Iterator[Metric]:
        closed = CounterMetricFamily(
            PREFIX + "connections_closed_total",
            "Client connections the sidecar closed because a client limit was hit, by port and reason: "
            "header_too_large and too_many_headers (answered 431), header_timeout (answered 408, or closed "
            "when nothing was sent), evicted (idle, closed to admit a new connection past the limit), "
            "over_limit (answered 503).",
            labels=("model", "port", "reason"),
        )
        open_ = GaugeMetricFamily(
            PREFIX + "connections_open",
            "Client connections the port is serving, those being closed by a limit aside; past "
            "SIDECAR_MAX_CONNECTIONS (proxy) or SIDECAR_ADMIN_MAX_CONNECTIONS (admin) only while none is idle.",
            labels=("model", "port"),
        )
        for guard in self._guards:
            for reason, count in guard.closed.items():
                closed.add_metric((self._model, guard.port, reason), count)
            open_.add_metric((self._model, guard.port), len(guard.served))
        yield closed
        yield open_
