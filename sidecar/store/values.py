"""The plain values the prediction store takes and returns, and the checks on a label item.

Nothing here knows SQL: both backends (SQLite, PostgreSQL) return the same values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

import orjson

from sidecar.exceptions import SidecarError

__all__ = [
    "OUTCOMES",
    "SHADOW_UNSTORED",
    "Coverage",
    "Estimate",
    "LabelItem",
    "Labelled",
    "Outcome",
    "OutcomeKind",
    "StoreCounts",
    "StoreError",
    "choose_row",
    "encode_item",
]

OutcomeKind = Literal["joined", "unmatched", "duplicate", "invalid"]
OUTCOMES: tuple[OutcomeKind, ...] = get_args(OutcomeKind)
# Why a shadow challenger's row was not written (StoreCounts.shadow_unstored).
SHADOW_UNSTORED: tuple[str, ...] = ("buffer_full", "shutdown", "failed")


class StoreError(SidecarError):
    """The prediction store cannot be used: it cannot be opened, or a label batch or a query failed.

    The message names the setting to fix, ``SIDECAR_STATE_DIR`` and the file
    or ``SIDECAR_STATE_URL`` with its password masked, so an operator knows what to fix.
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
    """What happened to one label item, or to one business outcome of an experiment.

    - ``joined``: stored with its prediction, which ``joined`` holds (a label);
      for a business outcome, ``variant`` is the arm it joined;
    - ``unmatched``: no stored prediction has that request id and row (not
      captured, evicted, or not yet written), or, for a business outcome, no
      stored prediction of the experiment's arms has it (``reason`` says which);
    - ``duplicate``: that prediction already has a label, which is kept; or
      the experiment already has that metric's outcome for that key;
    - ``invalid``: the item cannot be used; ``reason`` says why.

    Usage::

        outcome = (await store.attach_labels([LabelItem("req-1", None, "setosa")]))[0]
        if outcome.kind == "joined":
            performance.add(outcome.joined)
    """

    kind: OutcomeKind
    joined: Labelled | None = None
    reason: str | None = None
    variant: str | None = None


class Coverage(NamedTuple):
    """Stored predictions in a window, and how many of them have a label (raw counts, not weighted)."""

    predictions: int
    labelled: int


class Estimate(NamedTuple):
    """The accuracy estimated from confidence (CBPE-style) over every stored prediction of one variant in a window.

    ``confidence`` is the weighted mean ``Σ w·c / Σ w`` over the predictions
    that carried a confidence in [0, 1]; ``weight`` is ``Σ w`` and
    ``predictions`` their count (:mod:`sidecar.performance.estimate`).

    Usage::

        for variant, estimate in (await store.estimated(since=time.time() - 86400, model="iris")).items():
            print(variant, estimate.confidence, estimate.predictions)
    """

    confidence: float
    weight: float
    predictions: int


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """The store's counters since start, for ``/metrics``.

    ``dropped`` is by reason: ``buffer_full`` (the writer fell behind) and
    ``shutdown`` (added after close began, or unwritten at the deadline).
    ``evicted`` is by reason: ``ttl`` and ``max_rows``, the rows this process
    deleted (on PostgreSQL, only the leader evicts). ``failed`` counts
    prediction rows not written because the database refused them (SQLite: disk
    full, corrupt file, locked) or, a bug upstream, the record was malformed;
    rows that wait for an unreachable PostgreSQL are ``pending``, not failed.
    ``conflicts`` counts rows whose request id and row were already stored (the
    first is kept). ``labels`` is by :data:`OUTCOMES`; ``label_failures`` counts
    label items of batches the database refused (:meth:`attach_labels` raised).
    ``outcomes`` and ``outcome_failures`` count an experiment's business
    outcomes the same way (:meth:`attach_outcomes`). ``shadow_unstored``
    counts a shadow challenger's rows (:meth:`add_shadow`) not written, by
    reason: ``buffer_full``, ``shutdown`` (as for predictions) and ``failed``
    (refused by the database, or not encodable).

    ``rows`` is exact with SQLite. With PostgreSQL it is the table's count of
    the store's model at the last eviction round (the leader's, once a minute)
    or at connection, plus the rows this process wrote since: the fleet's
    count on the leader, and on the other replicas a figure that grows only
    with their own writes.
    """

    rows: int
    pending: int
    dropped: dict[str, int]
    evicted: dict[str, int]
    failed: int
    conflicts: int
    labels: dict[str, int]
    label_failures: int
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    outcome_failures: int = 0
    shadow_unstored: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHADOW_UNSTORED, 0))


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


def choose_row(request_id: str, row: int | None, found: Sequence[int]) -> Outcome | None:
    """Whether a label item can join, from the row indexes stored under its request id.

    ``found`` holds every stored row of the request when ``row`` is None, else
    the one with that row, if any. None means the item joins the prediction
    of ``found[0]``; otherwise the outcome, decided without it: **row None**
    joins row 0 of a single-row request, and is ``invalid`` for a request of
    several rows, since guessing a row would score the wrong prediction.
    """
    if row is None and len(found) > 1:
        return Outcome("invalid", reason=f"row required: request {request_id} had {len(found)} rows")
    if not found or (row is None and found[0] != 0):
        return Outcome("unmatched")
    return None
