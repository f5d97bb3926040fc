"""Shadow traffic: a copy of each request to the challenger, fire-and-forget, behind a bounded queue.

In shadow mode every client gets control's response, byte for byte; the
proxy then hands :meth:`Shadow.submit` a copy of the request it forwarded,
and a few worker tasks send it to the challenger. The caller pays one
``put_nowait``: the submit never blocks and never raises, and what cannot be
queued is dropped and counted, as the capture hand-off does. Bounded in every
direction: the queue in mirrors and in body bytes, the requests in flight by
``concurrency`` (one worker task and one pooled connection each), each
exchange by ``timeout`` from its first byte sent, and each response body kept
by ``max_body_bytes``.

Each mirror ends in exactly one outcome, counted in :attr:`Shadow.outcomes`
(the ``outcome`` label of ``mlsidecar_shadow_requests_total``):

=======================  ======================================================================
``sent``                 the challenger answered with a status below 500
``error``                it answered 5xx, refused or reset the connection, or broke HTTP
``timeout``              no complete answer within ``timeout``
``dropped_queue_full``   not queued: the queue was full, in mirrors or in bytes
``dropped_too_large``    not queued: the caller kept no body (``None``), or it is larger than the
                         whole byte bound
``dropped_shutdown``     submitted after :meth:`Shadow.close`, or still queued or in flight when
                         its deadline passed
``dropped_restart``      process mode: handed to a monitoring process that ended before it
                         reported the mirror's outcome (:mod:`sidecar.plane.shadow`)
``dropped_busy``         not queued: the serving process was saturated (with ``saturation``,
                         :mod:`sidecar.serving.saturation`): serving comes first
=======================  ======================================================================

Every mirror that was sent (``sent``, ``error``, ``timeout``) reaches the
``on_response`` callback as a :class:`ShadowResponse`, with the request id
the proxy gave control's request, so that the two answers can be paired.
With ``captured`` (the capture hand-off's :meth:`~sidecar.capture.handoff.Capture.captured`),
a mirror whose request control's capture kept, with a 2xx answer of
control's, carries what reading its answer as control's was read takes
(:class:`Captured`: the request, as captured); the others carry none, and
their answers count only for status and latency.

The request goes out as the proxy sent it to control: the same method,
target, and header lines (:func:`sidecar.serving.headers.upstream_headers`
builds them once per request; the challenger sees control's ``X-Request-Id``
and ``X-Forwarded-*``), through the project's one HTTP client, an
:class:`~sidecar.upstream.client.UpstreamClient` of its own with
``concurrency`` connections.

Inline (``SIDECAR_MONITORING_PLANE=inline``), the workers run on the proxy's
event loop: a mirror costs the loop about what forwarding a request does. In
process mode the proxy's queue is a :class:`~sidecar.plane.shadow.RemoteShadow`,
which only hands the mirrors to the monitoring process; its own Shadow sends
them there, at that process's idle priority (:meth:`MirrorQueue.put`). A request the
fallback model served (the ``use_fallback_model`` flag wins over the
experiment) is not mirrored: there is no control answer to pair it with.

Usage::

    shadow = Shadow("http://challenger:8080", experiment="ranker-v2", on_response=tap,
                    concurrency=8, timeout=5.0, queue_size=1000, queue_max_bytes=16 << 20, captured=capture.captured)
    await shadow.start()
    # in the proxy, once the client has control's answer:
    shadow.submit(scope["method"], target, lines, count, body, request_id)
    ...
    await shadow.close(deadline=loop.time() + 5)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, get_args

from sidecar.exceptions import UpstreamError, UpstreamTimeout
from sidecar.records import Exchange, Headers
from sidecar.upstream.client import UpstreamClient, UpstreamResponse

if TYPE_CHECKING:
    from sidecar.serving.saturation import Saturation

__all__ = ["OUTCOMES", "Captured", "MirrorQueue", "MirrorRequest", "Outcome", "Sent", "Shadow", "ShadowResponse"]

logger = logging.getLogger("sidecar.experiments.shadow")

Outcome = Literal[
    "sent",
    "error",
    "timeout",
    "dropped_queue_full",
    "dropped_too_large",
    "dropped_shutdown",
    "dropped_restart",
    "dropped_busy",
]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
Sent = Literal["sent", "error", "timeout"]


class Captured(NamedTuple):
    """A mirrored request as control's capture kept it: what reading the challenger's answer the way control's
    was read takes (the protocol adapters read a response against its request), and the keys of control's
    record (its time, whether the proxy made its id up, the probability it was kept with).

    Usage::

        Captured("POST", "/v1/models/m:predict", [(b"content-type", b"application/json")], b'{"instances": [[1]]}',
                 1764144638.0, False, 1.0)
    """

    method: str
    path: str
    headers: Headers
    body: bytes
    timestamp: float
    request_id_generated: bool
    probability: float | None


@dataclass(frozen=True, slots=True)
class ShadowResponse:
    """What the challenger made of one mirrored request.

    ``status`` is 0 and ``headers`` empty when no response came (``error`` or
    ``timeout`` before the headers); ``body`` is None when there was none, or
    it was longer than ``max_body_bytes``. ``latency_seconds`` runs from the
    mirror's send to its body's end (or to the failure). ``captured`` is the
    request as control's capture kept it, None when it was not captured (or
    the Shadow was given no ``captured``).

    Usage::

        ShadowResponse("req-1", "sent", 200, [(b"content-type", b"application/json")], b'{"predictions": [1]}', 0.012)
    """

    request_id: str
    outcome: Sent
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    latency_seconds: float
    captured: Captured | None = None


class MirrorRequest(NamedTuple):
    """One queued mirror: what :meth:`UpstreamClient.forward` takes to send control's request again, the
    request id to pair the answer by, and the request as control's capture kept it (None when it did not).

    Picklable: in process mode the serving process sends these to the monitoring process, which sends them
    on (:mod:`sidecar.plane.shadow`).
    """

    method: str
    target: bytes
    lines: bytes
    line_count: int
    body: bytes
    request_id: str
    captured: Captured | None


class MirrorQueue:
    """The bounded admission of mirrors: what :meth:`submit` queues, what it drops and counts.

    Both ends of shadow mode start here: :class:`Shadow` sends what it
    queues itself; :class:`~sidecar.plane.shadow.RemoteShadow` hands it to
    the monitoring process, whose own Shadow sends it. Subclasses implement
    :meth:`_enqueue`, and take a mirror back off the count (``queued``,
    ``queued_bytes``) when it leaves their queue.

    ``outcomes`` counts the mirrors that ended here, by outcome, every outcome from 0.
    With ``saturation``, :meth:`submit` drops every mirror while it is busy (``dropped_busy``).
    """

    def __init__(
        self,
        *,
        experiment: str,
        queue_size: int,
        queue_max_bytes: int,
        captured: Callable[[str], Exchange | None] | None = None,
        saturation: Saturation | None = None,
    ) -> None:
        for name, value in (("queue_size", queue_size), ("queue_max_bytes", queue_max_bytes)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self.experiment = experiment
        self.outcomes: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
        self._captured = captured
        self._saturation = saturation
        self._queue_size = queue_size
        self._queue_max_bytes = queue_max_bytes
        # Mirrors queued here and not yet taken off, and their bodies' bytes.
        self.queued = 0
        self.queued_bytes = 0
        self._closing = False

    def submit(self, method: str, target: bytes, lines: bytes, count: int, body: bytes | None, request_id: str) -> None:
        """Queue a copy of a request for the challenger, or count why not; O(1), never blocks, never raises.

        ``target``, ``lines`` and ``count`` are what the proxy passed to
        :meth:`UpstreamClient.forward` for control (raw path and query; ``count`` header lines without
        ``Host`` or framing); ``body`` is the whole request body, None when the proxy did not keep it.
        """
        if self._closing:
            self.outcomes["dropped_shutdown"] += 1
            return
        saturation = self._saturation
        if saturation is not None and saturation.busy:
            self.outcomes["dropped_busy"] += 1
            return
        if body is None or len(body) > self._queue_max_bytes:
            self.outcomes["dropped_too_large"] += 1
            return
        if not self._room(len(body)):
            self.outcomes["dropped_queue_full"] += 1
            return
        kept = None
        exchange = None if self._captured is None else self._captured(request_id)
        if exchange is not None and 200 <= exchange.status_code < 300:
            # Only then is control's prediction stored for the answer to pair with. Only the small parts are
            # kept, never control's response: the body is this mirror's own.
            kept = Captured(
                exchange.method,
                exchange.path,
                exchange.request_headers,
                body,
                exchange.timestamp,
                exchange.request_id_generated,
                exchange.probability,
            )
        self._admit(MirrorRequest(method, target, lines, count, body, request_id, kept))

    def put(self, request: MirrorRequest) -> None:
        """Queue a mirror another queue admitted (the serving process's, in process mode), or count why not."""
        if self._closing:
            self.outcomes["dropped_shutdown"] += 1
        elif len(request.body) > self._queue_max_bytes:
            self.outcomes["dropped_too_large"] += 1
        elif not self._room(len(request.body)):
            self.outcomes["dropped_queue_full"] += 1
        else:
            self._admit(request)

    def _room(self, size: int) -> bool:
        return self.queued < self._queue_size and self.queued_bytes + size <= self._queue_max_bytes

    def _admit(self, request: MirrorRequest) -> None:
        self.queued += 1
        self.queued_bytes += len(request.body)
        self._enqueue(request)

    def _enqueue(self, request: MirrorRequest) -> None:
        raise NotImplementedError

    def totals(self) -> dict[Outcome, int]:
        """Every mirror's outcome so far (``mlsidecar_shadow_requests_total``)."""
        return dict(self.outcomes)


class Shadow(MirrorQueue):
    """Mirrors requests to the challenger at ``url``; see the module docstring.

    Lifecycle: :meth:`start` once on the running loop, :meth:`submit` (or
    :meth:`put`) any number of times from that loop, :meth:`close` once (also
    after a ``start()`` that raised). ``on_response`` is called on the loop,
    once per mirror sent; it must be quick, and what it raises is logged,
    never passed on. ``captured`` answers, for a request id, control's
    captured exchange if its capture kept it
    (:meth:`~sidecar.capture.handoff.Capture.captured`); asked once per
    mirror submitted, on the loop, so it must be O(1).

    Usage::

        shadow = Shadow(url, experiment="ranker-v2", on_response=print, concurrency=4, timeout=2.0,
                        queue_size=100, queue_max_bytes=1 << 20)
        await shadow.start()
        shadow.submit("POST", b"/v1/models/m:predict", b"content-type: application/json\\r\\n", 1, body, "req-1")
        await shadow.close(deadline=asyncio.get_running_loop().time() + 5)
        shadow.outcomes["sent"]
    """

    def __init__(
        self,
        url: str,
        *,
        experiment: str,
        on_response: Callable[[ShadowResponse], None],
        concurrency: int,
        timeout: float,
        queue_size: int,
        queue_max_bytes: int,
        max_body_bytes: int = 1 << 20,
        captured: Callable[[str], Exchange | None] | None = None,
        saturation: Saturation | None = None,
    ) -> None:
        super().__init__(
            experiment=experiment,
            queue_size=queue_size,
            queue_max_bytes=queue_max_bytes,
            captured=captured,
            saturation=saturation,
        )
        for name, value in (("concurrency", concurrency), ("max_body_bytes", max_body_bytes)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        # One connection per worker, so a worker never waits for the pool: the pool timeout never fires.
        self._client = UpstreamClient(
            url, timeout=timeout, connect_timeout=timeout, max_connections=concurrency, pool_timeout=timeout
        )
        self._on_response = on_response
        self._concurrency = concurrency
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        # Unbounded as an asyncio.Queue: submit() and put() hold the bounds, in mirrors and in bytes, themselves.
        self._queue: asyncio.Queue[MirrorRequest | None] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._callback_failed = False

    async def start(self) -> None:
        """Open the connection pool and start the ``concurrency`` workers, on the running loop."""
        await self._client.open()
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"shadow-{self.experiment}-{i}") for i in range(self._concurrency)
        ]

    def _enqueue(self, request: MirrorRequest) -> None:
        self._queue.put_nowait(request)

    async def close(self, deadline: float) -> None:
        """Refuse new mirrors, send the queued ones until ``deadline`` (a ``loop.time()``), count the rest.

        Returns by the deadline, plus what cancelling the workers takes; then closes the connections.
        """
        loop = asyncio.get_running_loop()
        self._closing = True
        workers = self._workers
        # One stop per worker, behind what is queued: each takes one when the queue is drained.
        for _ in workers:
            self._queue.put_nowait(None)
        if workers:
            _, pending = await asyncio.wait(workers, timeout=max(0.0, deadline - loop.time()))
            for task in pending:
                # A worker cancelled mid-send counts its mirror as dropped_shutdown itself.
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        while not self._queue.empty():
            if self._queue.get_nowait() is not None:
                self.outcomes["dropped_shutdown"] += 1
        self.queued = self.queued_bytes = 0
        await self._client.close()

    async def _work(self) -> None:
        queue = self._queue
        while True:
            mirror = await queue.get()
            if mirror is None:
                return
            self.queued -= 1
            self.queued_bytes -= len(mirror.body)
            try:
                response = await self._send(mirror)
            except asyncio.CancelledError:
                self.outcomes["dropped_shutdown"] += 1
                raise
            self.outcomes[response.outcome] += 1
            try:
                self._on_response(response)
            except Exception:
                # The callback is the pairing's; a bug there must not stop the mirrors, nor fill the log.
                if not self._callback_failed:
                    self._callback_failed = True
                    logger.exception("shadow %s: the response callback failed; logged once", self.experiment)

    async def _send(self, mirror: MirrorRequest) -> ShadowResponse:
        """Send one mirror and read its answer; every failure becomes an outcome, none is raised."""
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        body: bytes | None = None
        outcome: Sent = "sent"
        start = perf_counter()
        try:
            # The client bounds silence; this bounds the whole exchange, a challenger trickling bytes included.
            async with asyncio.timeout(self._timeout):
                request = self._client.forward(
                    mirror.method, mirror.target, mirror.lines, mirror.line_count, mirror.body, None
                )
                async with request as response:
                    status = response.status
                    headers = response.raw_headers
                    body = await self._read(response)
        except (TimeoutError, UpstreamTimeout):
            outcome = "timeout"
        except UpstreamError:
            outcome = "error"
        except Exception:
            # Fail open: whatever else goes wrong with one mirror (a bug), the worker goes on to the next.
            logger.exception("shadow %s: request %s could not be mirrored", self.experiment, mirror.request_id)
            outcome = "error"
        if outcome == "sent" and status >= 500:
            outcome = "error"
        latency = perf_counter() - start
        return ShadowResponse(mirror.request_id, outcome, status, headers, body, latency, mirror.captured)

    async def _read(self, response: UpstreamResponse) -> bytes | None:
        """The whole body, or None when it is longer than ``max_body_bytes``.

        A declared length past the bound is not read at all (the connection is then closed, not pooled);
        a stream is read to its end, within the timeout, and kept only while it fits.
        """
        limit = self._max_body_bytes
        data = response.read_nowait()
        if data is not None:
            return data if len(data) <= limit else None
        length = response.content_length
        if length is not None:
            return await response.read() if length <= limit else None
        kept: list[bytes] = []
        size = 0
        async for chunk in response.iter_chunks():
            size += len(chunk)
            # size only grows: once past the limit, nothing more is kept.
            if size <= limit:
                kept.append(chunk)
        return b"".join(kept) if size <= limit else None
