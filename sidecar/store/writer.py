"""The writer thread's side of the store: one connection, its health, and everything that uses it.

:class:`Writer` is blocking and used by one thread, the store's writer thread
(:mod:`.front` hands it every call). It writes the buffer batch by batch,
then a shadow challenger's rows from their own buffer, joins labels and
answers queries on the same connection, after the buffered predictions are
written: a label never races its prediction.

With SQLite the file is opened once and a failure is the statement's: the
batch is counted as failed. With PostgreSQL the connection may be lost and
made again: while the database cannot be reached, batches go back to the
buffer, and :mod:`.health` says when to try again. Writes never evict there;
the leader does (:mod:`.leader`).

Its counters have one writer each: this thread, except ``evicted`` and the
row count with PostgreSQL, which the leadership thread sets
(:meth:`Writer.evicted_by_leader`), the row count under a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from sidecar.store import sqlite
from sidecar.store.backend import Backend, Unavailable
from sidecar.store.buffer import Buffer, Row
from sidecar.store.health import Health
from sidecar.store.values import OUTCOMES, SHADOW_UNSTORED, LabelItem, Outcome, StoreError

__all__ = ["Writer"]

logger = logging.getLogger("sidecar.store")

T = TypeVar("T")


class Writer:
    """The store's database work, from its one writer thread; the counters that work keeps.

    ``url`` None opens the SQLite ``file``; otherwise a PostgreSQL connection.

    Usage, in the writer thread::

        writer = Writer(buffer, health, url=None, file=Path("state/predictions.db"), model=None,
                        ttl_seconds=86400.0, max_rows=1_000_000, batch_rows=1_000, clock=time.time,
                        shadow=Buffer(10_000, 8 << 20, sqlite.shadow_bytes))
        writer.open()                                  # StoreError if the store cannot be used
        writer.flush()                                 # the buffer, batch by batch
        outcomes = writer.attach([LabelItem("req-1", None, "setosa")])
        writer.close()
    """

    def __init__(
        self,
        buffer: Buffer,
        health: Health,
        *,
        url: str | None,
        file: Path,
        model: str | None,
        ttl_seconds: float,
        max_rows: int,
        batch_rows: int,
        clock: Callable[[], float],
        shadow: Buffer | None = None,
    ) -> None:
        self._url = url
        self.location = health.location
        self.closing = False  # set by the loop when close begins: rows given back are then counted, not kept
        self.connected = False  # connected once: with PostgreSQL, the schema exists
        self.rows = 0
        self.failed = 0
        self.conflicts = 0
        self.evicted = {"ttl": 0, "max_rows": 0}
        self.labels: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.label_failures = 0
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.outcome_failures = 0
        self.unwritten_at_close = 0
        # A shadow challenger's rows not written: failed here, or given up at close.
        self.shadow_unstored: dict[str, int] = dict.fromkeys(SHADOW_UNSTORED, 0)
        self._buffer = buffer
        # The challenger's rows (shadow mode), written after the predictions, as predictions are.
        self._shadow = shadow
        self._health = health
        self._file = file
        self._model = model
        self._ttl_seconds = ttl_seconds
        self._max_rows = max_rows
        self._batch_rows = batch_rows
        self._clock = clock
        self._db: Backend | None = None
        self._rows_lock = threading.Lock()

    def open(self) -> None:
        """Open the file, or connect; a PostgreSQL that cannot be reached is left to retry, not raised."""
        if self._url is None:
            db = sqlite.Database.open(self._file, ttl_seconds=self._ttl_seconds, max_rows=self._max_rows)
            self._db = db
            self.rows = db.rows
            return
        try:
            self._connect(self._url)
        except Unavailable as exc:
            # Fail open: the model must serve. Rows wait in the buffer while the store retries.
            self._health.failed(exc)

    def flush(self, *, on_demand: bool = False) -> bool:
        """Write the buffer, batch by batch, then the challenger's rows; False if the database was unreachable,
        the rows kept.

        Failures are counted (``failed``; a challenger's rows in ``shadow_unstored``), never raised.
        """
        if self._url is None and self._db is None:
            return True  # closed
        # Predictions first: a challenger's row is of use only beside control's prediction.
        if not self._drain(self._buffer, self._write, on_demand=on_demand):
            return False
        return self._shadow is None or self._drain(self._shadow, self._write_shadow, on_demand=on_demand)

    def _drain(self, buffer: Buffer, write: Callable[[Backend, list[Row]], None], *, on_demand: bool) -> bool:
        while rows := buffer.take(self._batch_rows):
            try:
                db = self._database(on_demand=on_demand)  # on failure, it told the health itself
            except StoreError:
                db = None
            if db is None:
                self._give_back(buffer, rows)
                return False
            try:
                write(db, rows)
            except Unavailable as exc:
                # The database is away, not refusing: the rows wait for it, and so does the rest.
                self._give_back(buffer, rows)
                self._health.failed(exc)
                return False
            except Exception as exc:  # refused (disk full, corrupt file, locked) or a bug: the rows are lost
                buffer.done(rows)
                if buffer is self._buffer:
                    self.failed += len(rows)
                else:
                    self.shadow_unstored["failed"] += len(rows)
                self._health.failed(exc)
                continue
            buffer.done(rows)
            self._health.succeeded()
        return True

    def _write(self, db: Backend, rows: list[Row]) -> None:
        written = db.write(rows, self._clock())
        self.conflicts += written.conflicts
        if self._url is None:
            self.rows = db.rows
            self.evicted["ttl"] += written.evicted_ttl
            self.evicted["max_rows"] += written.evicted_max_rows
        else:  # the leadership thread evicts, and recounts
            with self._rows_lock:
                self.rows += written.inserted

    @staticmethod
    def _write_shadow(db: Backend, rows: list[Row]) -> None:
        db.write_shadow(rows)

    def probe(self) -> None:
        """One round trip, or a reconnection if due: keeps ``available`` true to the database while idle."""
        try:
            db = self._database(on_demand=False)  # on failure, it told the health itself
        except StoreError:
            return
        if db is None:
            return
        try:
            db.ping()
        except StoreError as exc:
            self._health.failed(exc)
        else:
            self._health.succeeded()

    def evict(self) -> tuple[int, int]:
        """Evict as SQLite does between writes: counts (ttl, max_rows); :class:`StoreError` if it fails."""
        db = self._database(on_demand=False)
        if db is None:
            return 0, 0
        try:
            ttl, oldest = db.evict(self._clock())
        except StoreError as exc:
            self._health.failed(exc)
            raise StoreError(f"the prediction store {self.location} could not evict: {exc}") from exc
        self.rows = db.rows
        self.evicted["ttl"] += ttl
        self.evicted["max_rows"] += oldest
        return ttl, oldest

    def evicted_by_leader(self, ttl: int, oldest: int, rows: int | None) -> None:
        """Count what the leader evicted (the leadership thread), and the table's count after, if it took one."""
        self.evicted["ttl"] += ttl
        self.evicted["max_rows"] += oldest
        if rows is not None:
            with self._rows_lock:
                self.rows = rows

    def attach(self, items: Sequence[LabelItem]) -> list[Outcome]:
        """Join labels after writing the buffer; :class:`StoreError` with nothing stored if the database fails."""
        try:
            outcomes = self._use(lambda db: db.attach(items, self._clock()))
        except StoreError as exc:
            self.label_failures += len(items)
            raise StoreError(f"the prediction store {self.location} could not store labels: {exc}") from exc
        for outcome in outcomes:
            self.labels[outcome.kind] += 1
        return outcomes

    def attach_outcomes(self, experiment: str, arms: Sequence[str], items: Sequence[object]) -> list[Outcome]:
        """Store an experiment's outcomes after writing the buffer; :class:`StoreError` with nothing stored if the
        database fails."""
        try:
            outcomes = self._use(lambda db: db.attach_outcomes(experiment, arms, items, self._clock()))
        except StoreError as exc:
            self.outcome_failures += len(items)
            raise StoreError(f"the prediction store {self.location} could not store outcomes: {exc}") from exc
        for outcome in outcomes:
            self.outcomes[outcome.kind] += 1
        return outcomes

    def query(self, query: Callable[[Backend], T]) -> T:
        """``query`` on the connection after writing the buffer; :class:`StoreError` if the database fails."""
        try:
            return self._use(query)
        except StoreError as exc:
            raise StoreError(f"the prediction store {self.location} could not be read: {exc}") from exc

    def close(self) -> None:
        """Write the buffer (one more try if the database is away), then close the connection."""
        if self._db is None and self._url is None:
            return
        self.flush(on_demand=True)
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _connect(self, url: str) -> None:
        from sidecar.store import postgres  # only here: choosing SQLite never imports the driver

        db = postgres.Database.connect(
            url, ttl_seconds=self._ttl_seconds, max_rows=self._max_rows, model=self._model, role="writer"
        )
        self._db = db
        with self._rows_lock:
            self.rows = db.rows
        self.connected = True
        self._health.succeeded()

    def _database(self, *, on_demand: bool) -> Backend | None:
        """The connection to use now; None while the database is unreachable and not yet due another try.

        Raises :class:`Unavailable` if connecting fails.
        """
        db, url = self._db, self._url
        if url is None:
            if db is None:
                raise StoreError(f"the prediction store {self.location} is not open")
            return db
        health = self._health
        if not health.available:
            if not health.due(on_demand=on_demand):
                return None
            health.attempt()
        if db is not None and not db.broken:
            return db
        self._db = None
        if db is not None:
            db.close()
        try:
            self._connect(url)
        except Unavailable as exc:
            health.failed(exc)
            raise
        except StoreError as exc:
            # A password rotated or a newer schema, after start: keep the rows and retry, loudly.
            problem = Unavailable(str(exc))
            health.failed(problem)
            raise problem from exc
        return self._db

    def _use(self, work: Callable[[Backend], T]) -> T:
        """``work`` on the connection, after the buffered predictions are written; the health told of the result.

        Raises :class:`StoreError` at once while the database is unreachable
        and not due another try, or when it fails now.
        """
        db = self._database(on_demand=True)
        if db is None or not self.flush(on_demand=True) or (db := self._db) is None:
            raise StoreError(f"{self.location} cannot be reached now; retry later")
        try:
            result = work(db)
        except StoreError as exc:
            self._health.failed(exc)
            raise
        self._health.succeeded()
        return result

    def _give_back(self, buffer: Buffer, rows: list[Row]) -> None:
        if self.closing:
            # Nobody will write them now: counted here, since close() counts only what is still waiting.
            buffer.done(rows)
            if buffer is self._buffer:
                self.unwritten_at_close += len(rows)
            else:
                self.shadow_unstored["shutdown"] += len(rows)
        else:
            buffer.put_back(rows)
