"""The plain data that flows from the proxy to the monitors.

``Exchange`` is what the request path hands off (raw bytes, no parsing);
``Row`` is what a protocol adapter finds in it; ``PredictionRecord`` is the
weighted record every monitor and sink consumes. None of them imports a web
framework, so statistics code can build them in tests directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

__all__ = ["Exchange", "ExchangeFields", "Row", "Parsed", "PredictionRecord", "parse_rfc3339", "rfc3339"]

Headers = Sequence[tuple[bytes, bytes]]


class Exchange(NamedTuple):
    """One proxied request/response pair, as captured on the request path.

    Header names are lower-case bytes. Bodies are as they crossed the wire
    (possibly gzip-encoded); decoding happens in the background.

    A named tuple, not a dataclass, so that it has a plain form: the capture
    hand-off queues an exchange's fields as a plain tuple (:data:`ExchangeFields`,
    in this order), and ``Exchange._make(fields)`` gives the named one back.
    The plain tuple is built without a Python-level ``__new__`` on the request
    path, it pickles fastest across the monitor link (0.8 us an exchange in
    batches of 64, against 1.7 as a dataclass), and, holding nothing mutable,
    it is untracked by the cyclic collector within its first two collections
    (the first untracks the headers it holds, the next the exchange), so no
    full collection walks it. Tuple subclasses and lists are never untracked:
    with them, a backlog of 10k queued exchanges was 40k tracked objects, and
    each full collection walked them on the proxy's loop for 11-15 ms.
    """

    request_id: str
    timestamp: float  # Unix seconds when the request arrived
    method: str
    path: str
    request_headers: Headers
    request_body: bytes
    status_code: int
    response_headers: Headers
    response_body: bytes
    latency_seconds: float
    variant: str
    strategy: str  # the sampling strategy in force
    # The probability it was kept with, in (0, 1]; None when the strategy
    # decides only after parsing (importance, or strata by feature), which the
    # capture worker does off the request path.
    probability: float | None
    request_id_generated: bool = False  # the sidecar made the id up: a payload's own id may replace it
    # The experiment's unit the proxy routed the request by, as units.unit_text writes it; None in no experiment,
    # and for a request a coin routed (it had no unit), since each such request is a unit of its own.
    unit: str | None = None
    # A shadow experiment's challenger answering a mirror of the request (sidecar.experiments.tap), not served
    # traffic: the capture worker hands it to the shadow comparison only, never to the sinks or the monitors.
    # Its request fields are control's when control's request was captured, else empty, and so is its response
    # body (the comparison then counts only its status and latency).
    shadow: bool = False

    def header(self, name: bytes, *, response: bool = False) -> bytes | None:
        """First value of a header by lower-case name, or None."""
        for key, value in self.response_headers if response else self.request_headers:
            if key == name:
                return value
        return None


# An Exchange's fields as a plain tuple, in its order (see Exchange).
ExchangeFields = tuple[
    str, float, str, str, Headers, bytes, int, Headers, bytes, float, str, str, float | None, bool, str | None, bool
]
# Where a plain exchange keeps what the hand-off and the link read without rebuilding it.
REQUEST_HEADERS: Final = 4
REQUEST_BODY: Final = 5
RESPONSE_HEADERS: Final = 7
RESPONSE_BODY: Final = 8
SHADOW: Final = 15


@dataclass(slots=True)
class Row:
    """One row of a batch as a protocol adapter reads it."""

    features: dict[str, Any]
    prediction: Any = None  # a class label, a number, or None when the response had none
    confidence: float | None = None  # the top probability, when the model gave probabilities
    scores: list[float] | None = None  # the probability vector or raw scores, when given


@dataclass(slots=True)
class Parsed:
    """What an adapter extracted from one exchange."""

    rows: list[Row]
    model_version: str | None = None
    request_id: str | None = None  # e.g. Open Inference Protocol's "id"


@dataclass(slots=True)
class PredictionRecord:
    """A weighted prediction record: one row of one captured exchange."""

    timestamp: float
    request_id: str
    row: int
    model_name: str
    model_version: str | None
    variant: str
    features: dict[str, Any]
    prediction: Any
    confidence: float | None
    scores: list[float] | None
    latency_ms: float
    status_code: int
    strategy: str
    probability: float
    # The experiment's assignment unit and segment_by value, in units.unit_text's form, when the request
    # had them: the prediction store keeps both, so outcomes join by unit and arms compare by segment.
    unit: str | None = None
    segment: str | None = None

    @property
    def weight(self) -> float:
        """Horvitz-Thompson weight 1/p: how many requests this record stands for."""
        return 1.0 / self.probability

    def to_log(self) -> dict[str, Any]:
        """The prediction log line (one JSON object per row)."""
        return {
            "timestamp": rfc3339(self.timestamp),
            "request_id": self.request_id,
            "row": self.row,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "variant": self.variant,
            "features": self.features,
            "prediction": self.prediction,
            "confidence": self.confidence,
            "latency_ms": self.latency_ms,
            "status_code": self.status_code,
            "sampling": {"strategy": self.strategy, "probability": self.probability},
        }


def rfc3339(timestamp: float) -> str:
    """RFC 3339 UTC with millisecond precision, e.g. ``2026-11-26T08:10:38.123Z``.

    The same text as ``datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")``
    with ``Z`` for the offset, which rounds to the microsecond half-even and then truncates.
    """
    global _last_second
    # Every prediction log line has one, and datetime would cost most of the line's
    # serialisation: the seconds part is built once per second, the milliseconds by arithmetic.
    fraction, whole = math.modf(timestamp)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole += 1.0
        micros -= 1_000_000
    elif micros < 0:
        whole -= 1.0
        micros += 1_000_000
    second, prefix = _last_second
    if whole != second:
        # A whole second: isoformat gives "YYYY-MM-DDTHH:MM:SS+00:00", zero-padded years included.
        prefix = datetime.fromtimestamp(whole, UTC).isoformat()[:19]
        _last_second = (whole, prefix)
    return prefix + _MILLISECONDS[micros // 1000]


# The last second rfc3339 formatted; one tuple, replaced whole, so any thread may read it.
_last_second: tuple[float, str] = (math.nan, "")
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))


def parse_rfc3339(text: str) -> float:
    """Unix seconds for an RFC 3339 time with a time zone, e.g. ``2026-11-26T08:00:00Z``.

    Raises :class:`ValueError` naming the value. A time without a zone is
    refused: it would be read in the host's zone, which differs between replicas.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-11-26T08:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add 'Z' for UTC or an offset such as +02:00")
    return parsed.timestamp()
