"""Prediction logs as CloudEvents 1.0 over HTTP, in binary content mode."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from sidecar.records import rfc3339
from sidecar.sinks.base import DEFAULT_QUEUE_MAX_BYTES, LogBatch, Sink
from sidecar.upstream.client import UpstreamClient
from sidecar.upstream.delivery import post_with_retries

__all__ = ["CE_TYPE", "HttpSink"]

CE_TYPE = "ml-sidecar.prediction"
# Other client errors mean the event itself was refused: it would be refused again.


class HttpSink(Sink):
    """One CloudEvent per exchange, POSTed to a URL.

        Headers ``ce-specversion: 1.0``, ``ce-type: ml-sidecar.prediction``,
        ``ce-source: <source>``, ``ce-id: <request id>``, ``ce-time: <request
        time>`` and ``content-type: application/json``; the body is the JSON array
        of the exchange's rows. Up to ``concurrency`` events are in flight at once,
    outside the queue and its bounds.
        Each attempt has ``timeout`` seconds. A connection error, a timeout, a
        5xx, a 408 or a 429 is retried after an exponential backoff with full
        jitter (up to ``backoff``, ``2 * backoff``, …), for ``attempts`` tries in
        all; any other non-2xx answer is final. Retries keep the ``ce-id``, so
        the receiver can deduplicate.

        Usage::

            sink = HttpSink("https://collector:8443/events", source="ml-sidecar/iris", queue_size=10_000, timeout=5)
    """

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        source: str,
        queue_size: int,
        timeout: float,
        attempts: int = 3,
        backoff: float = 0.5,
        concurrency: int = 8,
        queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
    ) -> None:
        if attempts < 1 or concurrency < 1:
            raise ValueError("attempts and concurrency must be at least 1")
        super().__init__(queue_size=queue_size, queue_max_bytes=queue_max_bytes)
        parts = urlsplit(url)
        # The path and query go on the wire as configured: UpstreamClient would strip a trailing "/" from a base.
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._client = UpstreamClient(
            f"{parts.scheme}://{parts.netloc}", timeout=timeout, connect_timeout=timeout, max_connections=concurrency
        )
        self._source = source
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._slots = asyncio.Semaphore(concurrency)
        self._sending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._client.open()
        await super().start()

    async def _run(self) -> None:
        while True:
            # A free slot first, then a batch: while every slot is busy, rows
            # wait in the bounded queue, where overflow is dropped and counted.
            await self._slots.acquire()
            if not await self._next():
                break
            task = asyncio.create_task(self._send(self._take()))
            self._sending.add(task)
            task.add_done_callback(self._sent)
        if self._sending:
            await asyncio.wait(set(self._sending))

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._slots.release()

    async def _send(self, batch: LogBatch) -> None:
        rows = len(batch.lines)
        try:
            problem = await self._post(batch)
        except asyncio.CancelledError:
            self.dropped += rows
            raise
        if problem is None:
            self.written += rows
        else:
            self.failed += rows
        self._report(problem)

    async def _post(self, batch: LogBatch) -> str | None:
        """Deliver one event, retrying; None on success, else what went wrong last."""
        headers = [
            ("ce-specversion", "1.0"),
            ("ce-type", CE_TYPE),
            ("ce-source", self._source),
            ("ce-id", batch.request_id),
            ("ce-time", rfc3339(batch.timestamp)),
            ("content-type", "application/json"),
        ]
        body = b"[" + b",".join(batch.lines) + b"]"
        return await post_with_retries(
            self._client,
            self._target,
            headers,
            body,
            timeout=self._timeout,
            attempts=self._attempts,
            backoff=self._backoff,
        )

    async def _release(self, deadline: float) -> None:
        # Sends still running when the worker was cancelled at the deadline.
        for task in self._sending:
            task.cancel()
        if self._sending:
            await asyncio.wait(set(self._sending))
        await self._client.close()
