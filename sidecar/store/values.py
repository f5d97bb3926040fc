"""The plain values the prediction store takes and returns, and the checks on a label item.

Nothing here knows SQL, so a store on another database returns the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import orjson

from sidecar.exceptions import SidecarError

__all__ = [
    "OUTCOMES",
    "Coverage",
    "LabelItem",
    "Labelled",
    "Outcome",
    "OutcomeKind",
    "StoreCounts",
    "StoreError",
    "encode_item",
]

OutcomeKind = Literal["joined", "unmatched", "duplicate", "invalid"]
OUTCOMES: tuple[OutcomeKind, ...] = get_args(OutcomeKind)


class StoreError(SidecarError):
    """The prediction store cannot be used: its file cannot be opened, or a label batch could not be written.

    The message names ``SIDECAR_STATE_DIR`` and the file, so an operator knows what to fix.
    """


class LabelItem(NamedTuple):
    """One delayed label, as the labels endpoint hands it over.

    ``row`` None means row 0 of a single-row request. ``timestamp`` is when
    the outcome happened, in Unix seconds, if the caller knows it.

    Usage::

        LabelItem("req-1", None, "setosa")          # the request had one row
        LabelItem("req-2", 3, 12.5, 1764144638.0)   # row 3 of a batch request
    """

    request_id: str
    row: int | None
    label: Any
    timestamp: float | None = None


@dataclass(frozen=True, slots=True)
class Labelled:
    """A stored prediction joined with its label: what performance metrics and label delay need.

    Usage::

        for joined in await store.labelled(since=time.time() - 86400):
            correct += joined.weight * (joined.prediction == joined.label)
            delays.append(joined.delay)
    """

    request_id: str
    row: int
    timestamp: float  # when the prediction was made (the request arrived), Unix seconds
    model: str
    version: str | None
    variant: str
    prediction: Any
    scores: list[float] | None
    weight: float  # 1/p, as the record carried it
    segments: dict[str, Any]  # the configured segment features; None where the request lacked one
    label: Any
    label_timestamp: float | None  # when the outcome happened, if the caller said
    labelled_at: float  # when the store received the label

    @property
    def delay(self) -> float:
        """Seconds from the prediction to the label's arrival: how late ground truth came."""
        return self.labelled_at - self.timestamp


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one label item.

    - ``joined``: stored with its prediction, which ``joined`` holds;
    - ``unmatched``: no stored prediction has that request id and row (not
      captured, evicted, or not yet written);
    - ``duplicate``: that prediction already has a label, which is kept;
    - ``invalid``: the item cannot be used; ``reason`` says why.

    Usage::

        outcome = (await store.attach_labels([LabelItem("req-1", None, "setosa")]))[0]
        if outcome.kind == "joined":
            performance.add(outcome.joined)
    """

    kind: OutcomeKind
    joined: Labelled | None = None
    reason: str | None = None


class Coverage(NamedTuple):
    """Stored predictions in a window, and how many of them have a label (raw counts, not weighted)."""

    predictions: int
    labelled: int


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """The store's counters since start, for ``/metrics``.

    ``dropped`` is by reason: ``buffer_full`` (the writer fell behind) and
    ``shutdown`` (added after close began, or unwritten at the deadline).
    ``evicted`` is by reason: ``ttl`` and ``max_rows``. ``failed`` counts
    prediction rows not written because SQLite refused them (disk full,
    corrupt file, locked) or, a bug upstream, the record was malformed;
    ``conflicts`` rows whose request id and row were already stored (the first
    is kept). ``labels`` is by :data:`OUTCOMES`; ``label_failures`` counts label
    items of batches that SQLite refused (:meth:`attach_labels` raised).
    """

    rows: int
    pending: int
    dropped: dict[str, int]
    evicted: dict[str, int]
    failed: int
    conflicts: int
    labels: dict[str, int]
    label_failures: int


def encode_item(item: object) -> tuple[str, int | None, str, float | None]:
    """The item with its label as JSON text, or ValueError saying why it cannot be used.

    The labels endpoint validates its input; this defends the store against
    callers that do not, since one bad item must not fail the whole batch.
    """
    if not isinstance(item, tuple) or len(item) != 4:
        raise ValueError("expected (request_id, row, label, timestamp)")
    request_id, row, label, timestamp = item
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("request_id must be a non-empty string")
    # bool is an int subclass, and True must not quietly mean row 1.
    if row is not None and (not isinstance(row, int) or isinstance(row, bool) or row < 0):
        raise ValueError("row must be a non-negative integer or null")
    if timestamp is not None and (
        not isinstance(timestamp, int | float) or isinstance(timestamp, bool) or not math.isfinite(timestamp)
    ):
        raise ValueError("timestamp must be a finite number of Unix seconds or null")
    # orjson writes NaN as null, which would store a label nobody sent.
    if label is None or (isinstance(label, float) and not math.isfinite(label)):
        raise ValueError("label is missing or not a finite value")
    try:
        text = orjson.dumps(label).decode()
    except TypeError:  # orjson.JSONEncodeError: an object, a non-string key, an int past 64 bits
        raise ValueError("label is not a JSON value") from None
    return request_id, row, text, None if timestamp is None else float(timestamp)
