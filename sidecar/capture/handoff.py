"""The hand-off from the request path to the capture worker.

Per request, the proxy calls :meth:`Capture.admit` as it arrives (the
sampling decision, when the strategy can take it from headers alone, so a
dropped request is never buffered), :meth:`Capture.submit` once the client
has its response (the raw exchange onto a bounded queue with
``put_nowait``), and :meth:`Capture.observe` at the end, whatever the outcome
(trigger detection sees errors too). None of them parses a body or waits: a
full queue drops the exchange and counts it, so a slow monitor can never slow
the model's traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.prometheus import PREFIX, counter_by
from sidecar.records import Exchange, Headers
from sidecar.sampling import Sampler

__all__ = ["Capture", "CaptureMetrics", "DROP_REASONS", "Handoff"]

logger = logging.getLogger("sidecar.capture.handoff")

# error: a fault in the sampler itself (a bug); the exchange is lost, the response was already sent.
DROP_REASONS = ("queue_full", "too_large", "parse_error", "error")


class CaptureMetrics(Collector):
    """``mlsidecar_captures_total`` and ``mlsidecar_capture_dropped_total``."""

    def __init__(self, model: str, strategy: str) -> None:
        self.model = model
        self.strategy = strategy
        self.captured = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

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
            "Exchanges the sampler kept but capture lost: queue_full, too_large (body over the capture limit), "
            "parse_error (the payload adapter could not read it), error (a fault in the sampler).",
            self.model,
            "reason",
            self.dropped,
        )


class Handoff:
    """A bounded FIFO of exchanges with a single consumer, the capture worker.

    It does what the worker needs of ``asyncio.Queue`` at a quarter of the cost
    per item: a put is a length check and a deque append, and a future is made
    only when the worker waits on an empty queue. ``asyncio.Queue`` keeps
    getter and putter queues and a count of unfinished tasks, and the request
    path paid for them on every capture.

    Usage::

        handoff = Handoff(maxsize=10_000)
        if not handoff.put_nowait(exchange):  # never blocks; False when full
            ...
        exchanges = await handoff.get(limit=64)  # the oldest, at least one
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        self.maxsize = maxsize
        self._items: deque[Exchange] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, exchange: Exchange) -> bool:
        """Append an exchange; False, and nothing appended, when the queue is full."""
        items = self._items
        if len(items) >= self.maxsize:
            return False
        items.append(exchange)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def get(self, limit: int) -> list[Exchange]:
        """Wait until something is queued, then take up to ``limit`` exchanges, oldest first."""
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self.get_nowait(limit)

    def get_nowait(self, limit: int) -> list[Exchange]:
        """Take up to ``limit`` exchanges, oldest first; an empty list when there are none."""
        items = self._items
        return [items.popleft() for _ in range(min(limit, len(items)))]

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items


class Capture:
    """Sampling decision and bounded queue between the proxy and the capture worker.

    Usage::

        capture = Capture(sampler, model="iris", max_bytes=1 << 20, queue_size=10_000)
        # in the proxy, after the response is sent:
        capture.submit(exchange_fields...)
        # in the worker:
        exchanges = await capture.queue.get(limit=64)
    """

    def __init__(self, sampler: Sampler, *, model: str, max_bytes: int, queue_size: int) -> None:
        self.sampler = sampler
        # Rate 0 turns capture off entirely: the proxy then buffers nothing.
        self.enabled = sampler.rate > 0
        self.max_bytes = max_bytes
        self.queue = Handoff(queue_size)
        self.metrics = CaptureMetrics(model, sampler.strategy)
        # Importance and feature strata need the parsed payload: the worker decides.
        self.deferred = sampler.needs_features or sampler.needs_response

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
    ) -> None:
        """Enqueue one finished exchange that :meth:`admit` kept. A body of None was over ``max_bytes``.

        ``probability`` is what :meth:`admit` returned: None when the decision is
        the worker's (importance and feature strata need the parsed payload).
        Never blocks: a full queue drops the exchange and counts it.
        """
        if request_body is None or response_body is None:
            self.metrics.dropped["too_large"] += 1
            return
        # Positional, in Exchange's field order: on the request path, keywords cost twice as much.
        exchange = Exchange(
            request_id,
            timestamp,
            method,
            path,
            request_headers,
            request_body,
            status_code,
            response_headers,
            response_body,
            latency_seconds,
            variant,
            self.sampler.strategy,
            probability,
            request_id_generated,
        )
        if not self.queue.put_nowait(exchange):
            self.metrics.dropped["queue_full"] += 1

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
