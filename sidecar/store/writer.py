"""The store's front: a bounded buffer filled on the event loop, one writer thread emptying it.

The capture worker calls :meth:`PredictionStore.add` with each exchange's
records; that encodes them into the few strings a row stores (never the
feature dict) and appends them to a deque, and never waits. A background task
wakes the writer every ``flush_seconds``, or as soon as ``batch_rows`` are
waiting or the buffer is half full in bytes, and the writer thread writes them,
``batch_rows`` per transaction. Labels, queries and eviction run in the same
thread, on the same connection, after the buffered predictions are written: a
label never races its prediction.

The buffer is bounded in rows (``buffer_rows``) and in bytes
(``buffer_bytes``, ``SIDECAR_STORE_BUFFER_MAX_BYTES``): a prediction may be a
long vector, and ten thousand of them must not outgrow the pod.

Each counter has one writer: the loop counts drops and unencodable records,
the thread everything else. The buffer's byte total is the exception, added
to by the loop and taken from by whichever side empties the deque, under a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sidecar.records import PredictionRecord
from sidecar.store.sqlite import Database, encode, encoded_bytes
from sidecar.store.values import OUTCOMES, Coverage, LabelItem, Labelled, Outcome, StoreCounts, StoreError
from sidecar.threads import lower_priority

__all__ = [
    "FILENAME",
    "DEFAULT_TTL_SECONDS",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_BUFFER_ROWS",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_FLUSH_SECONDS",
    "PredictionStore",
]

logger = logging.getLogger("sidecar.store")

T = TypeVar("T")

FILENAME = "predictions.db"  # in SIDECAR_STATE_DIR
DEFAULT_TTL_SECONDS = 30 * 86400.0  # ground truth may take a month
DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_BUFFER_ROWS = 10_000
# SIDECAR_STORE_BUFFER_MAX_BYTES's default. An encoded row of a typical prediction is well under
# 800 bytes, so 10,000 rows fit and the row bound binds first; this one stops long predictions
# (vectors, generated text). 8 MiB, next to the capture queue's 32 MiB and a sink's 8 MiB, keeps
# a loaded sidecar (about 150 MiB) under the example manifest's 256 MiB limit.
DEFAULT_BUFFER_BYTES = 8 << 20
DEFAULT_BATCH_ROWS = 1_000
DEFAULT_FLUSH_SECONDS = 0.1
# Writes evict as they go; this keeps the TTL honest when no traffic comes.
_EVICT_EVERY_SECONDS = 60.0


class PredictionStore:
    """Captured predictions in ``state_dir/predictions.db``, joined later with their labels.

    ``segment_features`` names the features kept with each prediction for
    per-segment performance; the rest of the feature dict is never stored.
    ``clock`` (Unix seconds) dates labels and drives the TTL; tests inject one.

    Usage::

        store = PredictionStore("/var/lib/ml-sidecar", segment_features=("country",), buffer_bytes=8 << 20)
        await store.start()                 # StoreError if the file cannot be used
        monitor.subscribe(store.add)        # O(rows), never blocks, never raises
        outcomes = await store.attach_labels([LabelItem("req-1", None, "setosa")])
        joined = await store.labelled(since=time.time() - 86400, model="iris")
        predictions, labelled = await store.coverage(since=time.time() - 86400)
        await store.close(deadline=asyncio.get_running_loop().time() + 5)
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        segment_features: Sequence[str] = (),
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_rows: int = DEFAULT_MAX_ROWS,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
            raise ValueError(f"ttl_seconds must be a positive number of seconds, not {ttl_seconds!r}")
        if not (math.isfinite(flush_seconds) and flush_seconds > 0):
            raise ValueError(f"flush_seconds must be a positive number of seconds, not {flush_seconds!r}")
        for name, value in (
            ("max_rows", max_rows),
            ("buffer_rows", buffer_rows),
            ("buffer_bytes", buffer_bytes),
            ("batch_rows", batch_rows),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        self.path = Path(state_dir) / FILENAME
        self.segment_features = tuple(segment_features)
        self.ttl_seconds = float(ttl_seconds)
        self.max_rows = max_rows
        self._buffer_rows = buffer_rows
        self._buffer_bytes = buffer_bytes
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._pending: deque[tuple[Any, ...]] = deque()  # encoded rows (sqlite.encode)
        # encoded_bytes over _pending. Behind the loop's back, the writer thread only
        # subtracts, so a read without the lock may be stale but never below the truth.
        self._pending_bytes = 0
        self._bytes_lock = threading.Lock()
        self._wake = asyncio.Event()
        # A thread of its own: sqlite3 blocks, and a slow disk must not starve
        # the loop's default executor. One thread also means one connection, no locks.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="prediction-store", initializer=lower_priority
        )
        self._db: Database | None = None  # the writer thread's alone
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._healthy = True
        self._rows = 0
        self._dropped = {"buffer_full": 0, "shutdown": 0}
        self._evicted = {"ttl": 0, "max_rows": 0}
        self._failed = 0
        self._unencodable = 0  # the loop's share of failed: records encode() raised on
        self._conflicts = 0
        self._labels: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._label_failures = 0

    async def start(self) -> None:
        """Open or create the file and start the background writer.

        Raises :class:`StoreError`, naming ``SIDECAR_STATE_DIR`` and the file,
        when it cannot be opened, is not a database, or has another schema.
        """
        try:
            await self._call(self._open_blocking)
        except BaseException:
            self._closing = self._closed = True
            self._dropped["shutdown"] += len(self._take(len(self._pending)))
            self._executor.shutdown(wait=False)
            raise
        self._task = asyncio.create_task(self._run(), name="prediction-store")
        self._task.add_done_callback(self._writer_done)

    def add(self, records: Sequence[PredictionRecord]) -> None:
        """Buffer the records of one or more exchanges for writing; a monitor subscriber.

        O(rows), never blocks, never raises. An exchange (its rows are
        consecutive, from row 0) is dropped whole, and counted, when the buffer
        cannot take all its rows, or their bytes unless the buffer is empty (a
        bound below one exchange would otherwise refuse it for ever), or the
        store is closing. A record that cannot be encoded (say p = 0) is
        counted ``failed`` and costs its own row only.
        """
        if self._closing:
            self._dropped["shutdown"] += len(records)
            return
        rows, starts = self._encode(records)
        if not rows:
            return
        size = sum(map(encoded_bytes, rows))
        pending = self._pending
        if len(pending) + len(rows) > self._buffer_rows or self._pending_bytes + size > self._buffer_bytes:
            self._add_what_fits(rows, starts)
        else:
            self._append(rows, size)
        if len(pending) >= self._batch_rows or self._pending_bytes * 2 >= self._buffer_bytes:
            self._wake.set()

    def _encode(self, records: Sequence[PredictionRecord]) -> tuple[list[tuple[Any, ...]], list[int]]:
        """The records' rows, and where in that list each exchange starts."""
        rows: list[tuple[Any, ...]] = []
        starts: list[int] = []
        names = self.segment_features
        for record in records:
            if record.row == 0 or not starts:
                starts.append(len(rows))
            try:
                rows.append(encode(record, names))
            except Exception:
                self._unencodable += 1
                if self._unencodable == 1:
                    logger.warning(
                        "prediction store %s: a record could not be encoded; such rows are counted as failed",
                        self.path,
                        exc_info=True,
                    )
        return rows, starts

    def _add_what_fits(self, rows: list[tuple[Any, ...]], starts: list[int]) -> None:
        # The buffer is nearly full: take the exchanges one by one, as if each came alone.
        pending = self._pending
        for start, end in zip(starts, [*starts[1:], len(rows)], strict=True):
            exchange = rows[start:end]
            size = sum(map(encoded_bytes, exchange))
            if len(pending) + len(exchange) > self._buffer_rows or (
                self._pending_bytes + size > self._buffer_bytes and pending
            ):
                self._dropped["buffer_full"] += len(exchange)
            else:
                self._append(exchange, size)

    def _append(self, rows: list[tuple[Any, ...]], size: int) -> None:
        # Counted before the rows are visible, so the writer's subtraction never comes first.
        with self._bytes_lock:
            self._pending_bytes += size
        self._pending.extend(rows)

    @property
    def pending_bytes(self) -> int:
        """The buffer's size in bytes, as :func:`~sidecar.store.sqlite.encoded_bytes` estimates it."""
        return self._pending_bytes

    async def flush(self) -> None:
        """Write what is buffered now. Failures are counted (``failed``), never raised."""
        await self._call(self._flush_blocking)

    async def attach_labels(self, items: Sequence[LabelItem]) -> list[Outcome]:
        """Join labels to their predictions, in one transaction: one :class:`Outcome` per item, in order.

        Buffered predictions are written first. Raises :class:`StoreError` if
        SQLite fails, with nothing of the batch stored, so the caller may retry.
        """
        return await self._call(self._attach_blocking, items)

    async def labelled(self, since: float, model: str | None = None) -> list[Labelled]:
        """Labelled predictions made at or after ``since`` (prediction time), oldest first.

        Optionally of one model. Raises :class:`StoreError` if SQLite fails.
        """
        return await self._call(self._query, lambda db: db.labelled(since, model))

    async def coverage(self, since: float, model: str | None = None) -> Coverage:
        """Predictions made at or after ``since``, and how many have a label."""
        return await self._call(self._query, lambda db: db.coverage(since, model))

    async def evict(self) -> tuple[int, int]:
        """Evict now what is past the TTL, then the oldest past ``max_rows``: counts (ttl, max_rows).

        The writer also does this with every batch, and every minute without traffic.
        """
        return await self._call(self._evict_blocking)

    def counts(self) -> StoreCounts:
        """The counters, for ``/metrics``. Cheap: no SQL."""
        return StoreCounts(
            rows=self._rows,
            pending=len(self._pending),
            dropped=dict(self._dropped),
            evicted=dict(self._evicted),
            failed=self._failed + self._unencodable,
            conflicts=self._conflicts,
            labels=dict(self._labels),
            label_failures=self._label_failures,
        )

    async def close(self, deadline: float) -> None:
        """Stop taking records, write the buffer until ``deadline`` (a ``loop.time()``), close the file.

        Rows still buffered at the deadline are counted as dropped (``shutdown``).
        A batch being written then is left to finish in the writer thread,
        which closes the file after it. Safe to call more than once.
        """
        if self._closed:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        final = loop.run_in_executor(self._executor, self._close_blocking)
        await asyncio.wait([final], timeout=max(0.0, deadline - loop.time()))
        # Taking them also stops the writer, which writes only what is still in the deque.
        self._dropped["shutdown"] += len(self._take(len(self._pending)))
        self._executor.shutdown(wait=False)
        self._closed = True

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"the prediction store {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_evict = loop.time() + _EVICT_EVERY_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_seconds):
                    await self._wake.wait()
            self._wake.clear()
            if self._pending:
                await self._call(self._flush_blocking)
            if loop.time() >= next_evict:
                next_evict = loop.time() + _EVICT_EVERY_SECONDS
                # Already counted and logged by the writer; the next round tries again.
                with contextlib.suppress(StoreError):
                    await self._call(self._evict_blocking)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        # The writer catches SQLite's failures itself; ending otherwise is a bug, and the buffer will fill.
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("prediction store %s: the writer stopped on an unexpected error", self.path, exc_info=exc)

    def _take(self, limit: int) -> list[tuple[Any, ...]]:
        # Safe from either thread: deque.popleft is atomic, and the other side may empty it first.
        taken: list[tuple[Any, ...]] = []
        pending = self._pending
        with contextlib.suppress(IndexError):
            while len(taken) < limit:
                taken.append(pending.popleft())
        size = sum(map(encoded_bytes, taken))
        with self._bytes_lock:
            self._pending_bytes -= size
        return taken

    # Below: the writer thread only.

    def _open_blocking(self) -> None:
        db = Database.open(self.path, ttl_seconds=self.ttl_seconds, max_rows=self.max_rows)
        self._db = db
        self._rows = db.rows

    def _require_db(self) -> Database:
        if self._db is None:
            raise StoreError(f"the prediction store {self.path} is not open")
        return self._db

    def _flush_blocking(self) -> None:
        db = self._db
        if db is None:
            return
        while rows := self._take(self._batch_rows):
            try:
                written = db.write(rows, self._clock())
            except Exception as exc:  # fail open: disk full, corrupt file, locked by another process
                self._failed += len(rows)
                self._report(exc)
                continue
            self._report(None)
            self._rows = db.rows
            self._conflicts += written.conflicts
            self._evicted["ttl"] += written.evicted_ttl
            self._evicted["max_rows"] += written.evicted_max_rows

    def _evict_blocking(self) -> tuple[int, int]:
        db = self._require_db()
        try:
            ttl, oldest = db.evict(self._clock())
        except sqlite3.Error as exc:
            self._report(exc)
            raise StoreError(f"the prediction store {self.path} could not evict: {exc}") from exc
        self._rows = db.rows
        self._evicted["ttl"] += ttl
        self._evicted["max_rows"] += oldest
        return ttl, oldest

    def _attach_blocking(self, items: Sequence[LabelItem]) -> list[Outcome]:
        db = self._require_db()
        self._flush_blocking()
        try:
            outcomes = db.attach(items, self._clock())
        except sqlite3.Error as exc:
            self._label_failures += len(items)
            self._report(exc)
            raise StoreError(f"the prediction store {self.path} could not store labels: {exc}") from exc
        self._report(None)
        for outcome in outcomes:
            self._labels[outcome.kind] += 1
        return outcomes

    def _query(self, query: Callable[[Database], T]) -> T:
        db = self._require_db()
        self._flush_blocking()
        try:
            return query(db)
        except sqlite3.Error as exc:
            raise StoreError(f"the prediction store {self.path} could not be read: {exc}") from exc

    def _close_blocking(self) -> None:
        db = self._db
        if db is None:
            return
        self._flush_blocking()
        self._db = None
        db.close()

    def _report(self, problem: Exception | None) -> None:
        # Log changes of state only: a full disk must not log once per batch.
        if problem is not None and self._healthy:
            logger.warning(
                "prediction store %s is failing (%s); predictions are counted as failed, labels refused",
                self.path,
                problem,
                exc_info=not isinstance(problem, sqlite3.Error),  # anything else is a bug: show where
            )
        elif problem is None and not self._healthy:
            logger.info("prediction store %s recovered", self.path)
        self._healthy = problem is None
