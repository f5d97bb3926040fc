"""The hand-off from the request path to the capture worker.

Per request, the proxy calls :meth:`Capture.admit` as it arrives (the
sampling decision, when the strategy can take it from headers alone, so a
dropped request is never buffered), :meth:`Capture.submit` once the client
has its response (the raw exchange onto a bounded queue with
``put_nowait``), and :meth:`Capture.observe` at the end, whatever the outcome
(trigger detection sees errors too). None of them parses a body or waits: a
full queue drops the exchange and counts it, so a slow monitor can never slow
the model's traffic.

The queue is bounded twice: in exchanges (``SIDECAR_CAPTURE_QUEUE_SIZE``) and
in bytes (``SIDECAR_CAPTURE_QUEUE_MAX_BYTES``). Either alone fails a pod: ten
thousand exchanges of 1 MiB bodies are 20 GB, and a byte bound alone would
let a flood of tiny exchanges pile up Python objects. An exchange's bytes are
its bodies and header bytes plus an estimate of the objects that hold them
(:func:`exchange_bytes`), kept as a running total, so a put never looks at
what is already queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from itertools import chain

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.prometheus import PREFIX, counter_by
from sidecar.records import (
    REQUEST_BODY,
    REQUEST_HEADERS,
    RESPONSE_BODY,
    RESPONSE_HEADERS,
    Exchange,
    ExchangeFields,
    Headers,
)
from sidecar.sampling import Sampler

__all__ = ["Capture", "CaptureMetrics", "DEFAULT_QUEUE_MAX_BYTES", "DROP_REASONS", "Handoff", "exchange_bytes"]

logger = logging.getLogger("sidecar.capture.handoff")

# error: a fault in the sampler itself (a bug); the exchange is lost, the response was already sent.
# monitor_restart: handed to a monitoring process that ended before processing it (sidecar.plane).
DROP_REASONS = ("queue_full", "too_large", "parse_error", "error", "monitor_restart")

# SIDECAR_CAPTURE_QUEUE_MAX_BYTES's default. The example manifest gives the sidecar 256 MiB, of
# which a loaded sidecar uses about 150 MiB before any queue backs up: 32 MiB here, plus each
# sink's 8 MiB and the store's 8 MiB, leaves room for the worker's parsed batch and the allocator.
DEFAULT_QUEUE_MAX_BYTES = 32 << 20
# SIDECAR_CAPTURE_IN_FLIGHT_MAX_BYTES's default: bodies the proxy keeps for capture while their
# requests are still running (a slow model holds them for its whole answer). Without a total,
# 512 connections streaming 1 MiB bodies each way would keep 1 GiB; 32 MiB fits the budget above.
DEFAULT_IN_FLIGHT_MAX_BYTES = 32 << 20
# CPython's objects around the bytes: the Exchange and its strings (about 500 B measured), and a
# tuple and two bytes objects per header (about 120 B). Small exchanges are then bounded in bytes
# for what they really hold, though the count bound usually binds first for them.
_EXCHANGE_OVERHEAD = 512
_HEADER_OVERHEAD = 128


def exchange_bytes(exchange: ExchangeFields) -> int:
    """The memory an exchange holds while queued, estimated: bodies, header bytes, object overhead.

    O(headers), which the proxy bounds; it never depends on the queue's length. Takes the plain tuple
    the hand-off queues, or an :class:`Exchange`.

    >>> exchange_bytes(Exchange("id", 0.0, "POST", "/", [(b"a", b"bc")], b"{}", 200, [], b"{}", 0.0, "v", "s", 1.0))
    647
    """
    # An experiment's unit is left out: a copy of a request header's value or of a feature in a first body
    # message of at most 16 KiB, it is never larger than bytes counted here already.
    request, response = exchange[REQUEST_HEADERS], exchange[RESPONSE_HEADERS]
    # The header bytes summed in C: a Python loop over the pairs was two len() calls a header, on every capture.
    return (
        _EXCHANGE_OVERHEAD
        + len(exchange[REQUEST_BODY])
        + len(exchange[RESPONSE_BODY])
        + _HEADER_OVERHEAD * (len(request) + len(response))
        + sum(map(len, chain.from_iterable(request)))
        + sum(map(len, chain.from_iterable(response)))
    )


class CaptureMetrics(Collector):
    """``mlsidecar_captures_total`` and ``mlsidecar_capture_dropped_total``."""

    def __init__(self, model: str, strategy: str) -> None:
        self.model = model
        self.strategy = strategy
        self.captured = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        # With a monitoring process, the drops the serving process counted (its
        # request path, its queue), mirrored every second and added at exposition.
        self.serving_dropped: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        captures = CounterMetricFamily(
            PREFIX + "captures_total",
            "Exchanges kept by the sampler: logged, and handed to the monitors when the response was 2xx.",
            labels=("model", "strategy"),
        )
        captures.add_metric((self.model, self.strategy), self.captured)
        yield captures
        yield counter_by(
            "capture_dropped_total",
            "Exchanges the sampler kept but capture lost: queue_full (the queue's count or byte bound), "
            "too_large (body over the capture limit), "
            "parse_error (the payload adapter could not read it), error (a fault in the sampler), "
            "monitor_restart (lost with a monitoring process that ended).",
            self.model,
            "reason",
            {reason: n + self.serving_dropped.get(reason, 0) for reason, n in self.dropped.items()},
        )


class Handoff:
    """A FIFO of exchanges bounded in count and in bytes, with a single consumer, the capture worker.

    It holds them in their plain form (:data:`~sidecar.records.ExchangeFields`),
    which the consumer rebuilds with ``Exchange._make`` (the worker) or
    pickles as is (the monitor link); see :class:`~sidecar.records.Exchange` for why.

    It does what the worker needs of ``asyncio.Queue`` at a quarter of the cost
    per item: a put is a size estimate, two comparisons and a deque append, and
    a future is made only when the worker waits on an empty queue.
    ``asyncio.Queue`` keeps getter and putter queues and a count of unfinished
    tasks, and the request path paid for them on every capture.

    :attr:`nbytes` is the running total of :func:`exchange_bytes` over what is
    queued, at most ``max_bytes``. An exchange larger than ``max_bytes`` on its
    own still goes into an empty queue: a bound set below one exchange would
    otherwise refuse every large one for ever, and the proxy already caps a
    body at ``SIDECAR_CAPTURE_MAX_BYTES``.

    Usage::

        handoff = Handoff(maxsize=10_000, max_bytes=32 << 20)
        if not handoff.put_nowait(exchange):  # never blocks; False when full
            ...
        exchanges = await handoff.get(limit=64, max_bytes=1 << 20)  # the oldest, at least one
    """

    def __init__(self, maxsize: int, max_bytes: int = DEFAULT_QUEUE_MAX_BYTES) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.nbytes = 0
        # Each exchange with its size, so that taking it out costs no second estimate.
        self._items: deque[tuple[ExchangeFields, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, exchange: ExchangeFields) -> bool:
        """Append an exchange; False, and nothing appended, when the queue is full in count or in bytes."""
        items = self._items
        if len(items) >= self.maxsize:
            return False
        size = exchange_bytes(exchange)
        if self.nbytes + size > self.max_bytes and items:
            return False
        items.append((exchange, size))
        self.nbytes += size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def put_spare(self, exchange: ExchangeFields) -> bool:
        """Append an exchange only while the queue is under half full in count and in bytes; False otherwise.

        For what is not served traffic (a shadow challenger's answers, :mod:`sidecar.experiments.tap`): it
        takes only the spare half of the queue, so that under a backlog the captures of served traffic still
        have the other half to themselves.
        """
        if 2 * len(self._items) >= self.maxsize:
            return False
        size = exchange_bytes(exchange)
        if 2 * (self.nbytes + size) > self.max_bytes:
            return False
        self._items.append((exchange, size))
        self.nbytes += size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def get(self, limit: int, max_bytes: int | None = None) -> list[ExchangeFields]:
        """Wait until something is queued, then take what :meth:`get_nowait` takes."""
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self.get_nowait(limit, max_bytes)

    def get_nowait(self, limit: int, max_bytes: int | None = None) -> list[ExchangeFields]:
        """Take up to ``limit`` exchanges, oldest first; an empty list when there are none.

        With ``max_bytes``, stop before the exchange that would take the batch
        past it, though the first is always taken: the consumer then holds a
        bounded amount of payload at a time, whatever sizes are queued.
        """
        items = self._items
        taken: list[ExchangeFields] = []
        total = 0
        budget = self.nbytes if max_bytes is None else max_bytes
        while items and len(taken) < limit:
            exchange, size = items[0]
            if taken and total + size > budget:
                break
            items.popleft()
            taken.append(exchange)
            total += size
        self.nbytes -= total
        return taken

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items


class Capture:
    """Sampling decision and bounded queue between the proxy and the capture worker.

    ``max_bytes`` caps one body; ``queue_size`` and ``queue_max_bytes`` bound
    the queue in exchanges and in bytes (:class:`Handoff`);
    ``in_flight_max_bytes`` bounds the bodies the proxy keeps, across all the
    requests still running, before they reach the queue (:meth:`hold`).

    Usage::

        capture = Capture(sampler, model="iris", max_bytes=1 << 20, queue_size=10_000, queue_max_bytes=32 << 20)
        # in the proxy, after the response is sent:
        capture.submit(exchange_fields...)
        # in the worker:
        exchanges = await capture.queue.get(limit=64)
    """

    def __init__(
        self,
        sampler: Sampler,
        *,
        model: str,
        max_bytes: int,
        queue_size: int,
        queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
        in_flight_max_bytes: int = DEFAULT_IN_FLIGHT_MAX_BYTES,
    ) -> None:
        self.sampler = sampler
        # Rate 0 turns capture off entirely: the proxy then buffers nothing.
        self.enabled = sampler.rate > 0
        self.max_bytes = max_bytes
        self.queue = Handoff(queue_size, queue_max_bytes)
        self.in_flight_max_bytes = in_flight_max_bytes
        # Bytes of bodies kept by requests still running; the proxy holds and releases them.
        self.in_flight_bytes = 0
        self.metrics = CaptureMetrics(model, sampler.strategy)
        # Importance and feature strata need the parsed payload: the worker decides.
        self.deferred = sampler.needs_features or sampler.needs_response
        # The exchange submit() queued last: the proxy mirrors a request to a shadow challenger right after
        # capturing it, with no await between, so this tells the mirror whether its request was captured.
        self._last: ExchangeFields | None = None

    def hold(self, size: int) -> bool:
        """Take ``size`` bytes of the in-flight budget for a body kept for capture; False when it is spent.

        O(1), on the request path. The caller gives back what it held with
        :meth:`release` when the request ends, captured or not; a refusal is
        the caller's to count (as ``queue_full``: capture's buffers are full).
        """
        held = self.in_flight_bytes + size
        if held > self.in_flight_max_bytes:
            return False
        self.in_flight_bytes = held
        return True

    def release(self, size: int) -> None:
        """Give back bytes taken with :meth:`hold`."""
        self.in_flight_bytes -= size

    def submit(
        self,
        *,
        request_id: str,
        request_id_generated: bool,
        timestamp: float,
        method: str,
        path: str,
        request_headers: Headers,
        request_body: bytes | None,
        status_code: int,
        response_headers: Headers,
        response_body: bytes | None,
        latency_seconds: float,
        variant: str,
        probability: float | None,
        unit: str | None = None,
    ) -> None:
        """Enqueue one finished exchange that :meth:`admit` kept. A body of None was over ``max_bytes``.

        ``probability`` is what :meth:`admit` returned: None when the decision is
        the worker's (importance and feature strata need the parsed payload).
        ``unit`` is the experiment's unit the request was routed by (None: no experiment, or a coin).
        Never blocks: a queue full in count or in bytes drops the exchange and counts it (``queue_full``).
        """
        if request_body is None or response_body is None:
            self.metrics.dropped["too_large"] += 1
            return
        # The plain form, in Exchange's field order, the headers as tuples: nothing in it is mutable, so the cyclic
        # collector soon untracks it, and no full collection walks it however long it stays queued (see Exchange).
        exchange: ExchangeFields = (
            request_id,
            timestamp,
            method,
            path,
            tuple(request_headers),
            request_body,
            status_code,
            tuple(response_headers),
            response_body,
            latency_seconds,
            variant,
            self.sampler.strategy,
            probability,
            request_id_generated,
            unit,
            False,
        )
        if self.queue.put_nowait(exchange):
            self._last = exchange
        else:
            self.metrics.dropped["queue_full"] += 1

    def captured(self, request_id: str) -> Exchange | None:
        """The exchange :meth:`submit` queued last, if it is the request ``request_id``'s; else None. O(1).

        The proxy calls :meth:`submit` and then mirrors the same request (shadow mode) in one synchronous
        stretch of the loop, so the mirror asks here whether its request was captured: a challenger's
        answer is worth reading only when control's answer to the same request is in the store to pair with.
        """
        last = self._last
        return Exchange._make(last) if last is not None and last[0] == request_id else None

    def admit(self, request_headers: Headers) -> tuple[bool, float | None]:
        """Whether to capture a request, decided as it arrives: ``(keep, probability)``.

        Strategies that decide from headers alone decide here, so the proxy
        buffers nothing for the requests they drop; the others keep every
        request with probability None and decide in the worker. Never raises:
        a sampler fault drops the request's capture, counted (``error``).
        """
        if self.deferred:
            return True, None
        try:
            keep, probability = self.sampler.decide(request_headers)
        except Exception:
            self.fault()
            return False, None
        return keep, probability if keep else None

    def observe(self, status_code: int, latency_seconds: float) -> None:
        """Feed trigger detection with one finished request, whatever its outcome. Never raises."""
        try:
            self.sampler.observe(status_code, latency_seconds)
        except Exception:
            self.fault()

    def fault(self) -> None:
        """Count a sampler fault, logging the first with its traceback (call from an ``except`` block)."""
        self.metrics.dropped["error"] += 1
        if self.metrics.dropped["error"] == 1:
            logger.exception("the sampler failed; exchanges it fails on are dropped and counted (reason=error)")
