"""What :class:`~sidecar.store.writer.PredictionStore` asks of a database, and how a database says no.

Two backends implement :class:`Backend`: :class:`sidecar.store.sqlite.Database`
(one file per replica) and :class:`sidecar.store.postgres.Database` (one
connection to a database shared by every replica). Each is blocking and owned
by one thread, speaks its own SQL, and answers in the plain values of
:mod:`.values`. The store chooses one by ``SIDECAR_STATE_URL``; choosing
SQLite never imports the PostgreSQL driver.

A backend turns its driver's errors into two kinds, because the store does
different things with them:

- :class:`Unavailable`: the database cannot be reached now (down,
  restarting, slower than the statement timeout). The rows of a batch go back
  to the buffer and are written when it is back; a label batch is refused and
  may be retried.
- :class:`Refused`: the database answered and refused (SQLite: disk full,
  corrupt, locked). Retrying the same rows would fail again, so they are
  counted as failed.

Anything else a backend raises is a bug, which the store logs with its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sidecar.store.experiment import LabelledExposures, UnitSums
from sidecar.store.shadow import ShadowPairs
from sidecar.store.values import Coverage, Estimate, Labelled, Outcome, StoreError

__all__ = ["Backend", "Refused", "Unavailable", "Written"]


class Unavailable(StoreError):
    """The database cannot be reached now; the same work may succeed later."""


class Refused(StoreError):
    """The database refused the work; retrying the same rows would fail again."""


@dataclass(frozen=True, slots=True)
class Written:
    """What one batch of predictions did: rows inserted, rows already present, rows evicted by reason."""

    inserted: int
    conflicts: int
    evicted_ttl: int
    evicted_max_rows: int


class Backend(Protocol):
    """One connection to the prediction table, used from one thread; every method is one transaction or fewer.

    ``rows`` is the table's row count as this connection knows it (see
    :class:`~sidecar.store.values.StoreCounts`). Rows to :meth:`write` come
    from the backend module's own ``encode``.

    Usage, from the store's writer thread::

        db: Backend = sqlite.Database.open(path, ttl_seconds=86400.0, max_rows=1_000_000)
        db.write([sqlite.encode(record, ("country",))], now=time.time())
        outcomes = db.attach([LabelItem("req-1", None, "setosa")], now=time.time())
        db.close()
    """

    rows: int

    @property
    def broken(self) -> bool:
        """Whether the connection is lost and must be made again (a file never is)."""
        ...

    def ping(self) -> None:
        """One round trip to the database: raises if it does not answer."""
        ...

    def write(self, records: Sequence[tuple[Any, ...]], now: float) -> Written:
        """Insert encoded rows; the first of a (request id, row) wins, a repeat is a conflict."""
        ...

    def write_shadow(self, records: Sequence[tuple[Any, ...]]) -> int:
        """Insert a shadow challenger's encoded rows; the first of an (experiment, request id, row) wins: the rows
        inserted."""
        ...

    def attach(self, items: Sequence[object], now: float) -> list[Outcome]:
        """Join labels to stored predictions: one :class:`Outcome` per item, in order; the first label wins."""
        ...

    def labelled(self, since: float, model: str | None) -> list[Labelled]:
        """Labelled predictions made at or after ``since``, oldest first."""
        ...

    def coverage(self, since: float, model: str | None) -> Coverage:
        """Predictions made at or after ``since``, and how many of them are labelled."""
        ...

    def label_marker(self, since: float, model: str | None) -> tuple[int, int]:
        """A pair that changes whenever a labelled prediction enters or leaves the window: recompute only then."""
        ...

    def estimated(self, since: float, model: str | None) -> dict[str, Estimate]:
        """Per variant, the weighted mean confidence of the predictions made at or after ``since``."""
        ...

    def attach_outcomes(
        self, experiment: str, arms: Sequence[str], items: Sequence[object], now: float
    ) -> list[Outcome]:
        """Store an experiment's business outcomes that join a prediction of its arms: one :class:`Outcome` per
        item, in order; the first outcome of a key wins (:mod:`~sidecar.store.experiment`)."""
        ...

    def experiment_units(self, arms: Sequence[str], since: float, model: str | None) -> npt.NDArray[np.int64]:
        """Per arm, the analysis units exposed at or after ``since``: (units, requests routed without one)."""
        ...

    def outcome_sums(
        self,
        experiment: str,
        metric: str,
        arms: Sequence[str],
        since: float,
        model: str | None,
        period_seconds: float,
        calendar: bool,
    ) -> UnitSums:
        """One outcome metric's sums per arm over its analysis units, by segment and by period."""
        ...

    def labelled_exposures(
        self, arms: Sequence[str], since: float, model: str | None, period_seconds: float, calendar: bool
    ) -> LabelledExposures:
        """The labelled predictions of the arms at or after ``since``, with their analysis unit, segment and period."""
        ...

    def shadow_pairs(self, experiment: str, control: str, since: float, model: str | None) -> ShadowPairs:
        """A shadow experiment's challenger rows paired with control's predictions made at or after ``since``
        (:mod:`~sidecar.store.shadow`)."""
        ...

    def experiment_started(self, name: str, now: float) -> float:
        """When the experiment ``name`` first ran (on any replica sharing the database): record ``now`` if it never
        had, then read the time recorded."""
        ...

    def evict(self, now: float) -> tuple[int, int]:
        """Delete what is past the TTL, then the oldest past ``max_rows``, and the outcomes and the challenger's
        predictions they took with them: counts of predictions (ttl, max_rows)."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...
