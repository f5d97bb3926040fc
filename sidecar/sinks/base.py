"""The sink contract: a batch per exchange, a queue bounded in rows and in bytes, three counts, one metric."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.prometheus import PREFIX
from sidecar.records import PredictionRecord

__all__ = ["DEFAULT_QUEUE_MAX_BYTES", "LogBatch", "Sink", "LogMetrics"]

logger = logging.getLogger("sidecar.sinks")

# SIDECAR_LOG_QUEUE_MAX_BYTES's default, per sink: the example manifest's memory limit was measured
# with it full, beside the capture queue's 32 MiB and the store's 8 MiB (benchmarks/memory). 8 MiB
# per sink is still above the default 10,000 rows of a typical prediction (300-800 bytes a line), so for
# small payloads the row bound binds first, and large ones are what this bound is for.
DEFAULT_QUEUE_MAX_BYTES = 8 << 20
# CPython's objects around a batch's bytes: the batch, its tuple and request id, and each line's
# bytes object. Estimates; they keep a flood of one-row batches honest in bytes.
_BATCH_OVERHEAD = 192
_LINE_OVERHEAD = 48


# Not frozen, though no one changes a batch once built (every sink shares it): a frozen
# dataclass sets each field through object.__setattr__, and one batch is built per exchange.
@dataclass(slots=True)
class LogBatch:
    """The log lines of one captured exchange: one JSON object per row, without newlines.

    Usage::

        batch = LogBatch.from_records(records)  # the records of one exchange
        for sink in sinks:
            sink.offer(batch)
    """

    request_id: str
    timestamp: float  # Unix seconds when the request arrived
    lines: tuple[bytes, ...]
    # The memory the batch holds, estimated once here: queues keep running totals of it.
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        lines = self.lines
        self.nbytes = _BATCH_OVERHEAD + _LINE_OVERHEAD * len(lines) + sum(map(len, lines))

    @classmethod
    def from_records(cls, records: Sequence[PredictionRecord]) -> LogBatch:
        """Serialise the rows of one exchange: at least one, sharing its request id and time."""
        if not records:
            raise ValueError("a LogBatch needs at least one record")
        first = records[0]
        if len(records) == 1:
            # Most exchanges are one row: no list to build and copy into the tuple.
            return cls(first.request_id, first.timestamp, (orjson.dumps(first.to_log()),))
        dumps = orjson.dumps
        return cls(first.request_id, first.timestamp, tuple([dumps(r.to_log()) for r in records]))


class Sink(ABC):
    """A destination for prediction logs, behind a queue bounded in rows and in bytes.

    ``name`` is the ``sink`` label and is the kind (``stdout``, ``file``,
    ``http``), so label values come from configuration alone. A batch is
    queued whole or dropped whole: dropped when it would take the queue past
    ``queue_size`` rows, or past ``queue_max_bytes`` of :attr:`LogBatch.nbytes`
    unless the queue is empty (a bound below one batch would otherwise refuse
    that batch for ever). Batches taken for delivery are no longer queued: a
    write in progress holds up to one queue's worth more. Lifecycle::

        sink = FileSink("/var/log/predictions.jsonl", queue_size=10_000, max_bytes=100 << 20, backups=5)
        await sink.start()
        sink.offer(batch)  # from the capture worker, any number of times
        await sink.close(deadline=asyncio.get_running_loop().time() + 5)

    ``close()`` is to be called once, also after a ``start()`` that raised.
    """

    name: str

    def __init__(self, *, queue_size: int, queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES) -> None:
        if queue_max_bytes < 1:
            raise ValueError(f"queue_max_bytes must be at least 1, not {queue_max_bytes}")
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._capacity = queue_size
        self._queue_max_bytes = queue_max_bytes
        self._queue: deque[LogBatch] = deque()
        self._queued = 0  # rows in _queue
        self.queued_bytes = 0  # LogBatch.nbytes in _queue; only the event loop changes it
        self._ready = asyncio.Event()
        # Set when the queue is half full or closing: a lingering worker (_gather) must write now.
        self._urgent = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._healthy = True

    def counts(self) -> dict[str, int]:
        """Rows by outcome, as ``mlsidecar_log_records_total`` reports them."""
        return {"written": self.written, "dropped": self.dropped, "failed": self.failed}

    def offer(self, batch: LogBatch) -> None:
        """Queue a batch for delivery, or drop and count it when the queue is full (rows or bytes) or closing."""
        rows = len(batch.lines)
        size = batch.nbytes
        if (
            self._closing
            or self._queued + rows > self._capacity
            or (self.queued_bytes + size > self._queue_max_bytes and self._queue)
        ):
            self.dropped += rows
            return
        self._queue.append(batch)
        self._queued += rows
        self.queued_bytes += size
        self._ready.set()
        if self._half_full():
            self._urgent.set()

    async def start(self) -> None:
        """Start the background delivery task."""
        self._task = asyncio.create_task(self._run(), name=f"log-sink-{self.name}")
        self._task.add_done_callback(self._worker_done)

    async def close(self, deadline: float) -> None:
        """Refuse new batches, deliver queued ones until ``deadline`` (a ``loop.time()``), count the rest.

        Returns at the deadline at the latest, plus the milliseconds that cancelling takes.
        """
        loop = asyncio.get_running_loop()
        self._closing = True
        self._ready.set()
        self._urgent.set()
        task = self._task
        if task is not None:
            await asyncio.wait([task], timeout=max(0.0, deadline - loop.time()))
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
        self.dropped += self._queued
        self._queue.clear()
        self._queued = 0
        self.queued_bytes = 0
        await self._release(deadline)

    @abstractmethod
    async def _run(self) -> None:
        """Deliver batches until :meth:`_next` says the sink is closing and drained.

        Counts every row it takes from the queue, as ``dropped`` when cancelled.
        """

    @abstractmethod
    async def _release(self, deadline: float) -> None:
        """Stop what outlives the worker task and close the file, thread or connections.

        Counts the rows of deliveries it cancels as ``dropped``.
        """

    async def _next(self) -> bool:
        """Wait until a batch is queued; False once closing with nothing left."""
        while not self._queue:
            if self._closing:
                return False
            self._ready.clear()
            await self._ready.wait()
        return True

    async def _gather(self, seconds: float) -> None:
        """Let batches gather for up to ``seconds``, unless the queue is half full or the sink is closing."""
        if self._closing or self._half_full():
            return
        self._urgent.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._urgent.wait()

    def _half_full(self) -> bool:
        # In rows or in bytes: either way, waiting longer risks drops.
        return self._queued * 2 >= self._capacity or self.queued_bytes * 2 >= self._queue_max_bytes

    def _take(self) -> LogBatch:
        batch = self._queue.popleft()
        self._queued -= len(batch.lines)
        self.queued_bytes -= batch.nbytes
        return batch

    def _report(self, problem: str | None) -> None:
        # Log state changes only: a dead endpoint must not log one warning per record.
        if problem is not None and self._healthy:
            logger.warning("log sink %s is failing (%s); its records are counted as failed", self.name, problem)
        elif problem is None and not self._healthy:
            logger.info("log sink %s recovered", self.name)
        self._healthy = problem is None

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("log sink %s stopped on an unexpected error", self.name, exc_info=exc)


class LogMetrics(Collector):
    """``mlsidecar_log_records_total{model,sink,outcome}``, read from the sinks' counts at scrape time.

    Every sink has all three outcomes from start-up, zeros included. A
    collector rather than a prometheus-client counter: the capture worker
    offers every exchange to every sink, and the sinks count its rows as
    plain ints, without a lock.

    Usage::

        registry.register(LogMetrics("iris", sinks))
    """

    def __init__(self, model: str, sinks: Iterable[Sink]) -> None:
        self.model = model
        self.sinks = tuple(sinks)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            PREFIX + "log_records_total",
            "Prediction log records by sink and outcome: written, dropped (queue full in rows or bytes, "
            "or shutdown) or failed.",
            labels=("model", "sink", "outcome"),
        )
        model = self.model
        for sink in self.sinks:
            for outcome, value in sink.counts().items():
                family.add_metric((model, sink.name, outcome), value)
        yield family
