"""The shadow challenger's answers in the monitoring process: each one counted, each one of a captured request
read and stored beside control's prediction.

:class:`ShadowPairing` is the capture worker's shadow subscriber
(:meth:`~sidecar.capture.worker.CaptureWorker.subscribe_shadow`): it receives
the exchanges :class:`~sidecar.experiments.tap.ShadowTap` flagged ``shadow``,
on the loop, a batch at a time, and for each

1. counts its status and latency: every answer, of a captured request or
   not, goes into the challenger's error rate (the share of 5xx) and its
   latency histogram (the proxy's buckets, so the p95 is estimated as
   control's is, :func:`~sidecar.experiments.runner.serving_of`);
2. when it carries control's captured request and a 2xx answer, reads it
   with the protocol adapters, as the capture worker reads control's
   exchange (the same options, the same request, the same rule for the
   request id the labels quote), and hands its rows to the store
   (:meth:`~sidecar.store.PredictionStore.add_shadow`) under the challenger's
   variant, keyed and dated as control's rows. They pair with control's
   there, when the analysis reads them, and a label posted later labels both.

Each answer ends in one fate (``mlsidecar_shadow_answers_total{fate}``):

================  ==========================================================================
``stored``        read and handed to the store, to pair with control's prediction
``failed``        no 2xx answer (5xx, 4xx, a failed exchange, a timeout): nothing to read
``not_captured``  a 2xx answer to a request control's capture did not keep (sampled out, its
                  capture dropped, or control's answer not a 2xx, so no prediction of control's
                  is stored): its status and latency count, nothing is read
``unreadable``    a 2xx answer the adapters could not read, or whose body was not kept whole,
                  or whose rows were not as many as the request's
================  ==========================================================================

Nothing here parses on the serving loop, and nothing is kept per answer
once it is handled: the state is the counts and one histogram.

Usage::

    pairing = ShadowPairing(experiment, worker.options, store.add_shadow, model_name="iris")
    worker.subscribe_shadow(pairing.observe)
    pairing.fates["stored"], pairing.serving()     # the challenger's Serving: answers, 5xx share, p95 ms
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Final, Literal, get_args

from sidecar.alerting.source import histogram_quantile
from sidecar.experiments.data import Serving
from sidecar.experiments.definition import Experiment
from sidecar.protocols import AdapterOptions, PayloadError, parse_exchange
from sidecar.records import Exchange, PredictionRecord
from sidecar.serving.metrics import LATENCY_BUCKETS, Histogram

__all__ = ["FATES", "Fate", "ShadowPairing"]

logger = logging.getLogger("sidecar.experiments.pairing")

Fate = Literal["stored", "failed", "not_captured", "unreadable"]
FATES: Final[tuple[Fate, ...]] = get_args(Fate)


class ShadowPairing:
    """Counts the challenger's answers and stores the rows of those it can pair; see the module docstring.

    ``store`` is :meth:`~sidecar.store.PredictionStore.add_shadow` (it takes the
    experiment's name and the records); ``options`` the capture worker's,
    so the challenger's answers are read as control's are; ``model_name``
    the records' model, as the worker's.

    Usage::

        pairing = ShadowPairing(experiment, options, store.add_shadow, model_name="iris")
        pairing.observe(exchanges)          # the worker's shadow subscriber
    """

    def __init__(
        self,
        experiment: Experiment,
        options: AdapterOptions,
        store: Callable[[str, Sequence[PredictionRecord]], None],
        *,
        model_name: str,
    ) -> None:
        if experiment.mode != "shadow":
            raise ValueError(f"experiment {experiment.name!r} splits its traffic: it has no challenger to pair")
        self.experiment = experiment.name
        self.variant = experiment.treatments[0].name
        self.options = options
        self.model_name = model_name
        self.fates: dict[Fate, int] = dict.fromkeys(FATES, 0)
        # Every answer's latency, in the proxy's buckets, and its status class.
        self.latency = Histogram(LATENCY_BUCKETS)
        self.answers = 0
        self.errors = 0
        self._store = store

    def observe(self, exchanges: Sequence[Exchange]) -> None:
        """Count and read one batch of the challenger's answers (a capture worker's shadow subscriber)."""
        records: list[PredictionRecord] = []
        for exchange in exchanges:
            self.answers += 1
            self.latency.observe(exchange.latency_seconds)
            status = exchange.status_code
            if status >= 500:
                self.errors += 1
            if not 200 <= status < 300:
                self.fates["failed"] += 1
            elif not exchange.path:
                # The tap leaves the request out when control's capture did not keep it.
                self.fates["not_captured"] += 1
            else:
                rows = self._read(exchange)
                self.fates["stored" if rows else "unreadable"] += 1
                records += rows
        if records:
            self._store(self.experiment, records)

    def serving(self) -> Serving:
        """The challenger's answers so far (this process's): their count, the share of 5xx, the p95 latency in
        milliseconds; NaN without answers."""
        answers = self.answers
        p95 = histogram_quantile(0.95, self.latency.counts)
        return Serving(
            answers,
            self.errors / answers if answers else math.nan,
            math.nan if p95 is None else p95 * 1000.0,
        )

    def _read(self, exchange: Exchange) -> list[PredictionRecord]:
        """The answer's rows as records keyed like control's, or none when it cannot be read whole."""
        try:
            parsed = parse_exchange(exchange, self.options)
        except PayloadError as exc:
            logger.debug("shadow %s: answer to %s not readable: %s", self.experiment, exchange.request_id, exc)
            return []
        rows = parsed.rows
        if not rows or any(row.prediction is None for row in rows):
            # No prediction in a row: the body was not kept whole, or the adapter found none for it.
            return []
        request_id = exchange.request_id
        if exchange.request_id_generated and parsed.request_id:
            # The capture worker's rule: the payload's own id is the one control's record and its labels carry.
            request_id = parsed.request_id
        probability = 1.0 if exchange.probability is None else exchange.probability
        latency_ms = exchange.latency_seconds * 1000.0
        return [
            PredictionRecord(
                exchange.timestamp,
                request_id,
                i,
                self.model_name,
                parsed.model_version,
                self.variant,
                {},
                row.prediction,
                row.confidence,
                row.scores,
                latency_ms,
                exchange.status_code,
                exchange.strategy,
                probability,
            )
            for i, row in enumerate(rows)
        ]
