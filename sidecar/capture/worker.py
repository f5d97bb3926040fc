"""The capture worker: captured exchanges in, weighted prediction records out.

It runs as one background task. For each exchange it parses the payload
with the protocol adapter, takes the sampling decision if the strategy
needs the payload for it, builds one :class:`PredictionRecord` per row,
anonymises PII, writes the prediction log to the sinks, and hands the records
to every subscriber: the in-process API through which drift, quality,
performance and the prediction store receive the traffic. Subscribers get the
records of all the exchanges taken from the queue in one go (up to 64, and up
to 1 MiB of payload, so that a burst of large bodies is parsed a few at a
time) in a single call. A fault in any of these is counted and logged and
never stops the worker.

What a non-2xx exchange feeds: the prediction log only. Its rows are
written to the sinks, with the status code, the request's features and no
prediction, because that is what debugging a failing request needs. The
subscribers never see them: an error response carries no prediction, so it
has nothing to score, join or store, and its request would bias the feature
distributions (and a learned reference) toward the inputs that fail. The test
is one comparison per exchange; ``mlsidecar_requests_total{code}`` counts
those responses, and ``mlsidecar_captures_total`` still counts the exchanges,
since each was kept and logged.

A shadow experiment's challenger answers come through the same queue as
exchanges flagged ``shadow`` (:mod:`sidecar.experiments.tap`). They are not
served traffic: the worker hands them, a batch at a time, to the shadow
subscribers (:meth:`CaptureWorker.subscribe_shadow`, the comparison) and to
nothing else, neither the sinks nor the subscribers of served records, nor
the capture counters.

With an experiment, each record carries the request's ``unit`` (the one the
proxy routed it by, from the exchange) and its ``segment``, the value of the
experiment's ``segment_by``: a request header's, or the row's feature's
(after PII removal, so a segment never holds what anonymisation took out),
in :func:`~sidecar.experiments.units.unit_text`'s form, None when absent.
Without one, both stay None.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from sidecar.capture.handoff import Capture
from sidecar.capture.privacy import Anonymizer
from sidecar.experiments.units import unit_text
from sidecar.prometheus import counter
from sidecar.protocols import AdapterOptions, PayloadError, PayloadTooLarge, parse_exchange
from sidecar.records import SHADOW, Exchange, ExchangeFields, PredictionRecord
from sidecar.sinks import LogBatch, Sink
from sidecar.syntax.sampling import SourceKind

__all__ = ["CaptureWorker", "ShadowSubscriber", "WorkerMetrics", "Subscriber"]

logger = logging.getLogger("sidecar.capture.worker")

Subscriber = Callable[[Sequence[PredictionRecord]], None]
ShadowSubscriber = Callable[[Sequence[Exchange]], None]
T = TypeVar("T")
# Exchanges handled before the worker yields the loop: long enough to batch,
# short enough that a burst never holds the proxy's event loop for long.
_BATCH = 64
# And at most this much payload per batch (one exchange at least): a batch's records,
# parsed into Python objects, take several times its bytes until every subscriber is done.
_BATCH_BYTES = 1 << 20
_GATHER_SECONDS = 0.01


# process: an exchange could not be turned into records (a bug, never a bad
# payload: those are parse_error drops); subscriber: a monitor raised on
# records that were still logged.
Stage = Literal["process", "subscriber"]
_STAGES: tuple[Stage, ...] = ("process", "subscriber")


class WorkerMetrics:
    """``mlsidecar_monitor_errors_total{model,stage}``, a prometheus-client counter, every stage bound at start-up.

    Cold: a fault is a bug, so the counter's lock costs nothing that matters.
    The owner of the registry (the assembly) registers :attr:`errors`.

    Usage::

        metrics = WorkerMetrics("iris")
        registry.register(metrics.errors)
        metrics.series["subscriber"].inc()
    """

    def __init__(self, model: str) -> None:
        self.errors = counter(
            "monitor_errors_total",
            "Faults inside monitoring, by stage; serving is never affected.",
            ("model", "stage"),
        )
        self.series = {stage: self.errors.labels(model, stage) for stage in _STAGES}


class CaptureWorker:
    """Consume :attr:`Capture.queue` and fan records out to sinks and subscribers.

    Usage::

        worker = CaptureWorker(capture, options, anonymizer, sinks, model_name="iris", model_version=None,
                               version_header=b"x-model-version", segment_by=("header", "x-country"))
        worker.subscribe(drift.update)   # Callable[[Sequence[PredictionRecord]], None]
        task = asyncio.create_task(worker.run())
        ...
        await worker.drain(deadline)     # at shutdown
    """

    def __init__(
        self,
        capture: Capture,
        options: AdapterOptions,
        anonymizer: Anonymizer,
        sinks: Sequence[Sink],
        *,
        model_name: str,
        model_version: str | None,
        version_header: bytes,
        segment_by: tuple[SourceKind, str] | None = None,
    ) -> None:
        self.capture = capture
        self.options = options
        self.anonymizer = anonymizer
        self.sinks = list(sinks)
        self.model_name = model_name
        self.model_version = model_version
        self.version_header = version_header
        # The experiment's segment_by, split by where it is read: a header's name as ASGI spells it (lower
        # case, as the definition has it), or a feature's; empty when it is not read there.
        kind, name = segment_by or ("", "")
        self._segment_header = name.encode("latin-1") if kind == "header" else b""
        self._segment_feature = name if kind == "feature" else ""
        self.metrics = WorkerMetrics(model_name)
        self._subscribers: list[Subscriber] = []
        self._shadow_subscribers: list[ShadowSubscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Receive the records of every captured 2xx exchange, PII already removed.

        Each call carries the records of one or more exchanges, in capture
        order; the rows of one exchange are consecutive, starting at row 0.
        Exchanges whose response was not 2xx go to the prediction log only
        (see the module docstring).
        Called on the event loop: a subscriber must be quick (O(rows)) and
        leave heavy work to its own background task.
        """
        self._subscribers.append(subscriber)

    def subscribe_shadow(self, subscriber: ShadowSubscriber) -> None:
        """Receive the shadow challenger's answers (exchanges flagged ``shadow``), unparsed, in capture order.

        One call per batch taken from the queue that had any, on the event
        loop, as for :meth:`subscribe`. Without a shadow subscriber they are
        let go.
        """
        self._shadow_subscribers.append(subscriber)

    async def run(self) -> None:
        """Process exchanges until cancelled."""
        queue = self.capture.queue
        while True:
            exchanges = await queue.get(_BATCH, _BATCH_BYTES)
            self.process(exchanges)
            if len(exchanges) < _BATCH and queue.empty():
                # Traffic is not keeping the worker busy: let the next batch
                # gather for a moment. A wake-up, and every subscriber's call,
                # has a fixed cost, which is then paid per batch, not per
                # exchange; records reach the monitors at most this much later.
                await asyncio.sleep(_GATHER_SECONDS)

    async def drain(self, deadline: float) -> None:
        """Process what is queued until ``deadline`` (``loop.time()``), then close the sinks by it."""
        loop = asyncio.get_running_loop()
        queue = self.capture.queue
        while not queue.empty() and loop.time() < deadline:
            self.process(queue.get_nowait(_BATCH, _BATCH_BYTES))
            await asyncio.sleep(0)
        # What could not be processed in time is lost to monitoring: count it (the challenger's answers are
        # not captures, and the comparison they would have gone to stops too).
        left = queue.get_nowait(queue.qsize())
        self.capture.metrics.dropped["queue_full"] += sum(not exchange[SHADOW] for exchange in left)
        await asyncio.gather(*(sink.close(deadline) for sink in self.sinks))

    def process(self, exchanges: Sequence[ExchangeFields]) -> None:
        """Log each exchange's records to the sinks, then hand the 2xx ones to each subscriber in one call.

        Subscribers get the records of every 2xx exchange the worker took from
        the queue at once (up to 64, and up to 1 MiB of payload), in queue
        order, rather than one call per exchange: each call's fixed cost, and
        each columnar update's, is then paid per batch. The sinks still get one :class:`LogBatch` per exchange,
        whatever its status. Each exchange comes in its plain form (or as an :class:`Exchange`).
        """
        records: list[PredictionRecord] = []
        answers: list[Exchange] = []
        sinks = self.sinks
        for exchange in map(Exchange._make, exchanges):
            if exchange.shadow:
                answers.append(exchange)
                continue
            # Fail open: one exchange that trips a bug must not stop the worker or lose the others.
            try:
                rows = self._records(exchange)
                if not rows:
                    continue
                batch = LogBatch.from_records(rows)
                for sink in sinks:
                    sink.offer(batch)
            except Exception:
                self.metrics.series["process"].inc()
                logger.exception("capture worker: could not process capture %s; continuing", exchange.request_id)
                continue
            if 200 <= exchange.status_code < 300:
                records += rows
        if answers:
            self._hand(self._shadow_subscribers, answers)
        if records:
            self._hand(self._subscribers, records)

    def _hand(self, subscribers: Sequence[Callable[[Sequence[T]], None]], batch: Sequence[T]) -> None:
        for subscriber in subscribers:
            try:
                subscriber(batch)
            except Exception:
                self.metrics.series["subscriber"].inc()
                logger.exception("capture subscriber %r failed; continuing", subscriber)

    def _records(self, exchange: Exchange) -> list[PredictionRecord]:
        capture = self.capture
        try:
            parsed = parse_exchange(exchange, self.options)
        except PayloadTooLarge:
            # A gzip body that decodes past the capture limit.
            capture.metrics.dropped["too_large"] += 1
            return []
        except PayloadError as exc:
            capture.metrics.dropped["parse_error"] += 1
            logger.debug("capture %s: payload not readable: %s", exchange.request_id, exc)
            return []
        rows = parsed.rows
        if self.anonymizer.fields:
            anonymize = self.anonymizer.apply
            for row in rows:
                # First thing after parsing: even the sampler's strata table must not hold raw PII.
                row.features = anonymize(row.features)
        probability = exchange.probability
        if probability is None:
            confidences = [r.confidence for r in rows if r.confidence is not None]
            keep, probability = capture.sampler.decide(
                exchange.request_headers,
                rows[0].features if rows else None,
                min(confidences) if confidences else None,
            )
            if not keep:
                return []
        capture.metrics.captured += 1
        request_id = exchange.request_id
        if exchange.request_id_generated and parsed.request_id:
            # The payload's own id (OIP "id") is the one the caller knows, and labels will quote it.
            request_id = parsed.request_id
        version = parsed.model_version
        if not version:
            # The version header (e.g. x-model-version) of the response, else the configured version.
            value = exchange.header(self.version_header, response=True)
            version = value.decode("latin-1") if value else self.model_version
        latency_ms = exchange.latency_seconds * 1000.0
        # Positional, in the field order of PredictionRecord: keywords cost twice as much, once per row.
        timestamp, model, variant, status, strategy, unit = (
            exchange.timestamp,
            self.model_name,
            exchange.variant,
            exchange.status_code,
            exchange.strategy,
            exchange.unit,
        )
        # A header's segment is the exchange's; a feature's is each row's, set below.
        header = self._segment_header
        segment = unit_text(exchange.header(header)) if header else None
        # A loop, not a comprehension: most exchanges are one row, and a comprehension is a function of its own
        # (its setup cost a record's worth) that also turns these locals into slower closure cells.
        records: list[PredictionRecord] = []
        for i, row in enumerate(rows):
            records.append(
                PredictionRecord(
                    timestamp,
                    request_id,
                    i,
                    model,
                    version,
                    variant,
                    row.features,
                    row.prediction,
                    row.confidence,
                    row.scores,
                    latency_ms,
                    status,
                    strategy,
                    probability,
                    unit,
                    segment,
                )
            )
        feature = self._segment_feature
        if feature:
            for record in records:
                record.segment = unit_text(record.features.get(feature))
        return records
