"""The proxy app: a pure-ASGI reverse proxy in front of the model server.

This file is the whole request path. Per request it does only O(1) work:
rewrite headers, forward the request, stream the response back byte for
byte, time it and count it. It imports settings, metrics and the upstream
client, nothing that computes statistics.

An experiment (issue 17) adds one of two steps, each behind an attribute
that is None without one. Split mode: after the first body message, the
:class:`~sidecar.serving.arms.Split` picks the arm, whose client, metrics
and variant then serve the request. Shadow mode: once the client has
control's whole answer, a copy of the request goes to the
:class:`~sidecar.serving.arms.Mirror`'s Shadow, one ``put_nowait``. Control
answered means mirrored, whatever its status (a 5xx is an answer to compare
too); a request the proxy answered itself (502, 503 or 504: control gave no
answer to pair the challenger's with), whose client left before the end of
the answer (its body may not even be whole), or that the fallback served, is
not. While the ``use_fallback_model`` flag is set, neither step runs: the
fallback serves the request, which is in no arm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from time import perf_counter, time
from typing import Any

import orjson

from sidecar.capture.handoff import Capture
from sidecar.exceptions import UpstreamError
from sidecar.serving.arms import Mirror, MirrorBody, Split
from sidecar.serving.flags import Flags
from sidecar.serving.headers import client_headers, upstream_headers
from sidecar.serving.metrics import ProxyMetrics, RouteMetrics
from sidecar.upstream.client import Body, UpstreamClient

__all__ = ["ProxyApp", "CLIENT_CLOSED_REQUEST", "CLIENT_STALL", "WATCH_AFTER_SECONDS"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Any  # Callable[[], Awaitable[Message]]; kept loose to accept any ASGI server's callable
Send = Any

# nginx's code for "the client closed the connection before the response".
CLIENT_CLOSED_REQUEST = 499
# The mlsidecar_proxy_errors_total reason of a client dropped for taking no
# bytes of its response for the send timeout (as nginx's send_timeout).
CLIENT_STALL = "client_stall"
# Bodies up to this size are read whole and sent in one ASGI message: one
# write instead of two for the typical small prediction response.
_WHOLE_BODY_LIMIT = 64 * 1024
# A request still running after this long gets a task watching for its client
# to disconnect. Starting one for every request cost about a tenth of the
# proxy's CPU; most predictions finish well within this, and for them there is
# nothing left to cancel. A disconnect is therefore noticed within twice this.
WATCH_AFTER_SECONDS = 0.05


class _ClientDisconnected(Exception):
    pass


class _ClientStalled(Exception):
    pass


class _Exchange:
    """Per-request state shared with the disconnect watcher."""

    __slots__ = (
        "task",
        "finished",
        "disconnected",
        "request_size",
        "request_body",
        "capture_limit",
        "held",
        "receive",
        "cycle",
        "flow",
    )

    def __init__(self, task: asyncio.Task[Any] | None, capture_limit: int, receive: Receive) -> None:
        self.task = task
        # uvicorn's request cycle, of which ``receive`` is a bound method in
        # both HTTP implementations: its flow control says whether the client
        # takes the bytes sent to it, and its transport is what to drop when
        # the client stops. Under another ASGI server both are None.
        self.cycle: Any = getattr(receive, "__self__", None)
        self.flow: Any = getattr(self.cycle, "flow", None)
        # Set once the request body has been read: from then on, receive()
        # only says whether the client went away.
        self.receive: Receive | None = None
        self.finished = False
        self.disconnected = False
        self.request_size = 0
        # The request body kept for capture; None once it outgrew the limit.
        self.request_body: bytes | None = b""
        # -1 when capture is off, or was given up: nothing (more) is buffered.
        self.capture_limit = capture_limit
        # Bytes of the capture's in-flight budget this request holds; given back when it ends.
        self.held = 0

    def watch(self) -> None:
        """Cancel the request's task if the client goes away before the response is done.

        The ASGI server answers a pending ``receive()`` with ``http.disconnect``
        when the connection drops, and also once the response is complete; the
        ``finished`` flag tells the two apart.
        """
        task, receive = self.task, self.receive
        if task is None or receive is None or self.finished:
            return
        # The task's own loop rather than ensure_future(): on Python 3.11 every
        # implicit get_running_loop() is a getpid() system call.
        watcher = task.get_loop().create_task(receive())
        watcher.add_done_callback(self._on_message)

    def _on_message(self, watcher: asyncio.Future[Message]) -> None:
        if self.finished or watcher.cancelled() or self.task is None:
            return
        self.disconnected = True
        self.task.cancel()


class ProxyApp:
    """Forward every HTTP request to the upstream and stream the answer back.

    Usage::

        app = ProxyApp(client, metrics, capture, variant="primary", send_timeout=30)
        uvicorn.Config(app, ws="none", lifespan="off", server_header=False, date_header=False)

    With ``fallback`` (a client, its variant and the :class:`Flags`), a set
    ``use_fallback_model`` sends each new request there instead: one
    attribute read per request, and requests already in flight finish where
    they started.

    With ``split`` (a :class:`Split`), each request the fallback does not
    serve goes to the arm it routes to; ``variant`` is then the control's
    name (the arm a request whose client left before its body came is
    counted under). With ``mirror`` (a :class:`Mirror`), each request control
    answered is copied to the challenger after the client has the answer. An
    experiment is in one mode, so not both; see the module docstring for
    what is mirrored.

    A client that takes no bytes of its response for ``send_timeout``
    seconds (its connection's write buffer stays full) is dropped, which
    ends the exchange and frees its upstream connection: otherwise clients
    that never read could hold the whole pool.
    """

    def __init__(
        self,
        client: UpstreamClient,
        metrics: ProxyMetrics,
        capture: Capture,
        *,
        variant: str,
        fallback: tuple[UpstreamClient, str, Flags] | None = None,
        send_timeout: float,
        split: Split | None = None,
        mirror: Mirror | None = None,
    ) -> None:
        if split is not None and mirror is not None:
            raise ValueError("an experiment either splits the traffic or mirrors it, not both")
        if split is not None and variant != split.control:
            raise ValueError(f"with a split, the primary upstream serves control {split.control!r}, not {variant!r}")
        self.client = client
        self.metrics = metrics
        self._send_timeout = send_timeout
        self.capture = capture
        self.variant = variant
        self.route: RouteMetrics = metrics.routes[variant]
        # What serves a request: the upstream, its metrics and variant, and the experiment's split or mirror.
        # The fallback's has neither, so the flag wins over the experiment at no cost of its own: a request
        # the fallback serves is in no arm, and gets no mirror.
        self._primary = (client, self.route, variant, split, mirror)
        self._fallback = (
            self._primary if fallback is None else (fallback[0], metrics.routes[fallback[1]], fallback[1], None, None)
        )
        self._flags = None if fallback is None else fallback[2]
        self._capture_limit = capture.max_bytes if capture.enabled else -1
        # Requests waiting for a disconnect watcher, in two generations: at
        # each sweep the older one gets watchers (they have run for at least
        # WATCH_AFTER_SECONDS) and the younger one becomes the older.
        self._young: set[_Exchange] = set()
        self._old: set[_Exchange] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # The proxy server runs with lifespan off and websockets disabled,
            # so only HTTP reaches here; anything else is not ours to answer.
            return
        start = perf_counter()
        metrics = self.metrics
        metrics.in_flight += 1
        wall_time = metrics.last_request_time = time()
        capture_limit = self._capture_limit
        probability: float | None = None
        if capture_limit >= 0:
            # Decided before the body is read: a request the sampler drops is
            # never buffered, so rate 0.1 costs a tenth of rate 1, not most of it.
            keep, probability = self.capture.admit(scope["headers"])
            if not keep:
                capture_limit = -1
        loop = self._loop
        if loop is None:
            # The client's loop, known once it is open; kept, as reading it is a property call.
            loop = self._loop = self.client.loop
        # With the loop given, current_task() skips get_running_loop() and its getpid().
        exchange = _Exchange(asyncio.current_task(loop), capture_limit, receive)
        status = CLIENT_CLOSED_REQUEST
        response_size = 0
        upstream_time: float | None = None
        started = False
        lines, count, request_id, client_sent_id, declared_length = upstream_headers(
            scope["headers"], scope.get("client"), scope["scheme"], wall_time
        )
        flags = self._flags
        client, route, variant, split, mirror = (
            self._fallback if flags is not None and flags.use_fallback_model else self._primary
        )
        # The experiment's unit of the request, when an arm was chosen by one.
        unit: bytes | None = None
        # A streamed body kept for the mirror, when there is one.
        mirrored: MirrorBody | None = None
        try:
            target: bytes = scope["raw_path"]
            if scope["query_string"]:
                target += b"?" + scope["query_string"]
            # The first body message is read here rather than in a method: a
            # coroutine fewer per request, and most bodies fit in that message.
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientDisconnected
            first: bytes = message.get("body", b"")
            body: Body = first
            if message.get("more_body", False):
                if mirror is not None:
                    mirrored = MirrorBody(mirror)
                body = self._stream_body(first, receive, exchange, mirrored)
            else:
                size = exchange.request_size = len(first)
                if capture_limit >= 0:
                    if size > capture_limit:
                        exchange.request_body = None
                    elif self.capture.hold(size):
                        exchange.request_body = first
                        exchange.held = size
                    else:
                        self._give_up_capture(exchange)
                self._watch_later(exchange, receive, loop)
            if split is not None:
                # Decided here, before forwarding: a feature key's unit is in a whole first message; a
                # streamed body has none, and a coin decides its arm.
                index, unit = split.route(scope["headers"], scope["path"], first if body is first else None)
                client, route, variant = split.arms[index]
            sent_at = perf_counter()
            try:
                async with client.forward(scope["method"], target, lines, count, body, declared_length) as response:
                    status = response.status
                    started = True
                    response_headers = client_headers(response.raw_headers, request_id)
                    if status == 204 or status == 304:
                        # No body follows (RFC 9110 §6.4.1), whatever the Content-Length says (a 304's
                        # is its 200's); passed on, it would have the ASGI server wait for those bytes.
                        response_headers = [(k, v) for k, v in response_headers if k != b"content-length"]
                    head = {"type": "http.response.start", "status": status, "headers": response_headers}
                    flow = exchange.flow
                    # _send() inline for the two sends of the usual answer: a call fewer for each.
                    if flow is not None and flow.write_paused:
                        await self._send_stalled(send, head, exchange)
                    else:
                        await send(head)
                    # A small answer has usually arrived whole, with its headers.
                    captured = response.read_nowait()
                    if captured is None:
                        length = response.content_length
                        if length is not None and length <= _WHOLE_BODY_LIMIT:
                            captured = await response.read()
                    if captured is not None:
                        upstream_time = perf_counter() - sent_at
                        response_size = len(captured)
                        exchange.finished = True
                        message = {"type": "http.response.body", "body": captured}
                        if flow is not None and flow.write_paused:
                            await self._send_stalled(send, message, exchange)
                        else:
                            await send(message)
                    else:
                        kept: list[bytes] | None = [] if exchange.capture_limit >= 0 else None
                        async for chunk in response.iter_chunks():
                            response_size += len(chunk)
                            if kept is not None:
                                kept = self._keep(exchange, kept, chunk, response_size, capture_limit)
                            message = {"type": "http.response.body", "body": chunk, "more_body": True}
                            await self._send(send, message, exchange)
                        upstream_time = perf_counter() - sent_at
                        exchange.finished = True
                        await self._send(send, {"type": "http.response.body", "body": b""}, exchange)
                        captured = b"".join(kept) if kept is not None else None
                if exchange.capture_limit >= 0:
                    # After the client has its answer: capture costs it no latency.
                    self.capture.submit(
                        request_id=request_id.decode("latin-1"),
                        request_id_generated=not client_sent_id,
                        timestamp=wall_time,
                        method=scope["method"],
                        path=scope["path"],
                        request_headers=scope["headers"],
                        request_body=exchange.request_body,
                        status_code=status,
                        response_headers=response_headers,
                        response_body=captured if response_size <= capture_limit else None,
                        latency_seconds=perf_counter() - start,
                        variant=variant,
                        probability=probability,
                        # As unit_text decodes a header's bytes; a feature's unit was UTF-8 text already.
                        unit=None if unit is None else unit.decode("utf-8", "replace"),
                    )
                if mirror is not None:
                    # After the client has control's whole answer: the challenger's copy costs it no latency.
                    mirror.shadow.submit(
                        scope["method"],
                        target,
                        lines,
                        count,
                        first if mirrored is None else mirrored.body(),
                        request_id.decode("latin-1"),
                    )
            except UpstreamError as exc:
                if exchange.disconnected:
                    # The client left mid-body; the upstream saw an aborted
                    # request, which is the client's doing, not a proxy error.
                    raise _ClientDisconnected from exc
                metrics.errors[exc.reason] += 1
                if started:
                    # Headers are already out: all that is left is to cut the
                    # connection, so the client sees a truncated response
                    # rather than a complete-looking wrong one.
                    raise
                status = exc.status_code
                exchange.finished = True
                await self._send_error(send, exchange, status, f"upstream {exc.reason} error: {exc}", request_id)
        except asyncio.CancelledError:
            if not exchange.disconnected:
                if not started:
                    # Cut by the shutdown timeout: say so, rather than the
                    # server's bare 500, then let the cancellation proceed.
                    reason = "sidecar shutting down: request cut at the shutdown timeout"
                    with contextlib.suppress(_ClientStalled):
                        await self._send_error(send, exchange, 503, reason, request_id)
                raise
            # Our own watcher cancelled the upstream call because the client
            # left; that is a normal end of the request, not a server error.
            status = CLIENT_CLOSED_REQUEST
            if exchange.task is not None:
                exchange.task.uncancel()
        except _ClientDisconnected:
            status = CLIENT_CLOSED_REQUEST
        except _ClientStalled:
            # Its connection is dropped, so the client did not get this answer.
            metrics.errors[CLIENT_STALL] += 1
            status = CLIENT_CLOSED_REQUEST
        finally:
            exchange.finished = True
            if exchange.receive is not None:
                self._young.discard(exchange)
                self._old.discard(exchange)
            metrics.in_flight -= 1
            if exchange.held:
                # Submitted or not, the bodies are no longer this request's to keep.
                self.capture.release(exchange.held)
            if mirrored is not None:
                mirrored.release()
            if status != CLIENT_CLOSED_REQUEST and getattr(exchange.cycle, "disconnected", False) is True:
                # The client left before the watcher started (or between its
                # sweeps) and the answer went nowhere: count what the client got.
                # A disconnect is only watched for after WATCH_AFTER_SECONDS, so
                # one before that goes unseen by the proxy: the server drops what
                # is sent to a closed connection without a word. uvicorn's request
                # cycle records it in ``disconnected``, which it sets only while the
                # response is incomplete, so a client that closes after a complete
                # answer is not counted. Under another ASGI server there is no cycle.
                status = CLIENT_CLOSED_REQUEST
            duration = perf_counter() - start
            if self._capture_limit >= 0:
                # Every outcome feeds trigger sampling, 502/504 bursts included.
                self.capture.observe(status, duration)
            metrics.record(route, status, duration, upstream_time, exchange.request_size, response_size)

    async def _stream_body(
        self, first: bytes, receive: Receive, exchange: _Exchange, mirrored: MirrorBody | None
    ) -> AsyncIterator[bytes]:
        # Chunks go upstream as they come, so a 100 MB body is never held whole;
        # the ASGI server pauses reading from the client while we are behind.
        # Only ``mirrored`` (in shadow mode) keeps a copy for the challenger, within its bounds.
        exchange.request_size = len(first)
        limit = exchange.capture_limit
        # limit is -1 with capture off: nothing is kept.
        kept = self._keep(exchange, [], first, len(first), limit)
        if mirrored is not None:
            mirrored.add(first)
        if first:
            yield first
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # Abort the upstream request: it must not see a truncated body as complete.
                exchange.disconnected = True
                raise _ClientDisconnected
            chunk: bytes = message.get("body", b"")
            exchange.request_size += len(chunk)
            if kept is not None:
                kept = self._keep(exchange, kept, chunk, exchange.request_size, limit)
            if mirrored is not None:
                mirrored.add(chunk)
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                break
        if mirrored is not None:
            mirrored.finish()
        exchange.request_body = b"".join(kept) if kept is not None else None
        self._watch_later(exchange, receive, self.client.loop)

    def _keep(self, exchange: _Exchange, kept: list[bytes], chunk: bytes, total: int, limit: int) -> list[bytes] | None:
        """``kept`` with ``chunk`` added, or None when the body is not to be captured.

        None once the body (``total`` bytes so far) is past ``limit``, or when the
        in-flight budget is spent; the references kept so far are then dropped.
        """
        if total > limit:
            return None
        if not self.capture.hold(len(chunk)):
            self._give_up_capture(exchange)
            return None
        kept.append(chunk)
        exchange.held += len(chunk)
        return kept

    def _give_up_capture(self, exchange: _Exchange) -> None:
        """Keep no more of this request's bodies: the capture's in-flight budget is spent.

        Counted once, as ``queue_full``: like a full queue, the capture's
        buffers are full. What the request already holds is given back when it ends.
        """
        exchange.capture_limit = -1
        exchange.request_body = None
        self.capture.metrics.dropped["queue_full"] += 1

    def _send(self, send: Send, message: Message, exchange: _Exchange) -> Awaitable[None]:
        """``send(message)``, bounded by the send timeout when the client is not taking bytes.

        uvicorn's ``send`` waits (for its flow control to resume) only when
        writing is paused as it is called, so one attribute read picks the
        sends that can stall; the others get no timer. Returned, not awaited
        here: no coroutine of its own per message.
        """
        flow = exchange.flow
        if flow is not None and flow.write_paused:
            return self._send_stalled(send, message, exchange)
        # Typed by annotation, not typing.cast(): that is a call, with a subscripted generic, per message.
        sent: Awaitable[None] = send(message)
        return sent

    async def _send_stalled(self, send: Send, message: Message, exchange: _Exchange) -> None:
        try:
            async with asyncio.timeout(self._send_timeout):
                await send(message)
        except TimeoutError:
            # The exchange ends here; the disconnect watcher must not cancel it too.
            exchange.finished = True
            # abort(), not close(): close() would wait to flush to a client that does not read.
            exchange.cycle.transport.abort()
            # One loop turn, so that the server has seen the connection lost
            # when the app returns, and does not report an unfinished response.
            await asyncio.sleep(0)
            raise _ClientStalled from None

    async def _send_error(self, send: Send, exchange: _Exchange, status: int, error: str, request_id: bytes) -> None:
        body = orjson.dumps({"error": error, "request_id": request_id.decode("latin-1")})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id),
        ]
        await self._send(send, {"type": "http.response.start", "status": status, "headers": headers}, exchange)
        await self._send(send, {"type": "http.response.body", "body": body}, exchange)

    def _watch_later(self, exchange: _Exchange, receive: Receive, loop: asyncio.AbstractEventLoop) -> None:
        exchange.receive = receive
        self._young.add(exchange)
        if self._sweep is None:
            self._sweep = loop.call_later(WATCH_AFTER_SECONDS, self._on_sweep)

    def _on_sweep(self) -> None:
        self._sweep = None
        for exchange in self._old:
            exchange.watch()
        self._old, self._young = self._young, set()
        if self._old:
            self._sweep = self.client.loop.call_later(WATCH_AFTER_SECONDS, self._on_sweep)
