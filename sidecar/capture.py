"""The hand-off from the request path to the monitor worker.

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
from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.metrics import PREFIX
from sidecar.records import Exchange, Headers
from sidecar.sampling import Sampler

__all__ = ["Capture", "CaptureMetrics", "DROP_REASONS"]

logger = logging.getLogger("sidecar.capture")

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
            "Exchanges kept by the sampler and handed to the monitors.",
            labels=("model", "strategy"),
        )
        captures.add_metric((self.model, self.strategy), self.captured)
        yield captures
        dropped = CounterMetricFamily(
            PREFIX + "capture_dropped_total",
            "Exchanges the sampler kept but capture lost: queue_full, too_large (body over the capture limit), "
            "parse_error (the payload adapter could not read it), error (a fault in the sampler).",
            labels=("model", "reason"),
        )
        for reason, n in self.dropped.items():
            dropped.add_metric((self.model, reason), n)
        yield dropped


class Capture:
    """Sampling decision and bounded queue between the proxy and the monitor worker.

    Usage::

        capture = Capture(sampler, model="iris", max_bytes=1 << 20, queue_size=10_000)
        # in the proxy, after the response is sent:
        capture.submit(exchange_fields...)
        # in the worker:
        exchange = await capture.queue.get()
    """

    def __init__(self, sampler: Sampler, *, model: str, max_bytes: int, queue_size: int) -> None:
        self.sampler = sampler
        # Rate 0 turns capture off entirely: the proxy then buffers nothing.
        self.enabled = sampler.rate > 0
        self.max_bytes = max_bytes
        self.queue: asyncio.Queue[Exchange] = asyncio.Queue(maxsize=queue_size)
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
        exchange = Exchange(
            request_id=request_id,
            timestamp=timestamp,
            method=method,
            path=path,
            request_headers=request_headers,
            request_body=request_body,
            status_code=status_code,
            response_headers=response_headers,
            response_body=response_body,
            latency_seconds=latency_seconds,
            variant=variant,
            strategy=self.sampler.strategy,
            probability=probability,
            request_id_generated=request_id_generated,
        )
        try:
            self.queue.put_nowait(exchange)
        except asyncio.QueueFull:
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
