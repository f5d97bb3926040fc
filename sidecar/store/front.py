"""The store's front: a bounded buffer filled on the event loop, one writer thread emptying it.

The capture worker calls :meth:`PredictionStore.add` with each exchange's
records; that encodes them into the few strings a row stores (never the
feature dict) and offers them to the :class:`~sidecar.store.buffer.Buffer`,
and never waits. A background task wakes the writer every ``flush_seconds``,
or as soon as ``batch_rows`` are waiting or the buffer is half full in bytes,
and the writer thread (:class:`~sidecar.store.writer.Writer`) writes them,
``batch_rows`` per transaction. Labels, queries and (with SQLite) eviction
run in the same thread, on the same connection. A shadow experiment's
challenger rows (:meth:`PredictionStore.add_shadow`) wait in a second buffer
with the same bounds, written after the predictions (:mod:`.shadow`).

The backend is SQLite (``url`` None) or PostgreSQL (a ``postgresql://``
URL); see the package's docstring for what differs. With PostgreSQL, a
second thread holds the leader lock on a connection of its own and, while
leading, evicts (:mod:`.leader`); and the database may go away and come
back (:mod:`.health`): batches it cannot take go back to the buffer.

Each counter has one writer: the loop counts drops and unencodable records,
the writer thread the rest (:mod:`.writer` says which the leadership thread sets).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from sidecar.records import PredictionRecord
from sidecar.store import sqlite
from sidecar.store.buffer import Buffer
from sidecar.store.experiment import LabelledExposures, UnitSums
from sidecar.store.health import Health
from sidecar.store.shadow import ShadowPairs
from sidecar.store.values import (
    SHADOW_UNSTORED,
    Coverage,
    Estimate,
    LabelItem,
    Labelled,
    Outcome,
    StoreCounts,
    StoreError,
)
from sidecar.store.writer import Writer
from sidecar.syntax.store import mask_url
from sidecar.threads import lower_priority

if TYPE_CHECKING:
    from sidecar.store.leader import Leadership

__all__ = [
    "FILENAME",
    "DEFAULT_TTL_SECONDS",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_BUFFER_ROWS",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_LEADER_INTERVAL",
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
DEFAULT_LEADER_INTERVAL = 15.0  # SIDECAR_EVAL_INTERVAL_SECONDS's default
# SQLite's writes evict as they go; this keeps the TTL honest when no traffic comes. It is also the
# PostgreSQL leader's eviction round.
_EVICT_EVERY_SECONDS = 60.0
# Without traffic, an idle PostgreSQL connection is checked this often, so `available` follows an outage.
_PROBE_SECONDS = 5.0


class PredictionStore:
    """Captured predictions, joined later with their labels: in ``state_dir/predictions.db``, or at ``url``.

    ``url`` None keeps the store in SQLite, one file per replica. A
    ``postgresql://`` URL (``SIDECAR_STATE_URL``) shares one PostgreSQL database
    among the replicas; ``model`` then names whose replicas share leadership
    and eviction, and ``leader_interval`` is how often leadership is tried or
    checked (``SIDECAR_EVAL_INTERVAL_SECONDS``).

    ``segment_features`` names the features kept with each prediction for
    per-segment performance; the rest of the feature dict is never stored.
    ``clock`` (Unix seconds) drives the TTL and, with SQLite, dates labels
    (PostgreSQL dates them by its own clock); tests inject one.

    Usage::

        store = PredictionStore("/var/lib/ml-sidecar", segment_features=("country",), buffer_bytes=8 << 20)
        # or PredictionStore(state_dir, url="postgresql://sidecar:...@db/monitoring", model="iris")
        await store.start()                 # StoreError if the store cannot be used
        monitor.subscribe(store.add)        # O(rows), never blocks, never raises
        outcomes = await store.attach_labels([LabelItem("req-1", None, "setosa")])
        if store.is_leader:
            joined = await store.labelled(since=time.time() - 86400, model="iris")
            predictions, labelled = await store.coverage(since=time.time() - 86400)
        await store.close(deadline=asyncio.get_running_loop().time() + 5)
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        url: str | None = None,
        model: str | None = None,
        leader_interval: float = DEFAULT_LEADER_INTERVAL,
        segment_features: Sequence[str] = (),
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_rows: int = DEFAULT_MAX_ROWS,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, seconds in (
            ("ttl_seconds", ttl_seconds),
            ("flush_seconds", flush_seconds),
            ("leader_interval", leader_interval),
        ):
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {seconds!r}")
        for name, value in (
            ("max_rows", max_rows),
            ("buffer_rows", buffer_rows),
            ("buffer_bytes", buffer_bytes),
            ("batch_rows", batch_rows),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        self._url = url
        self.model = model
        self.segment_features = tuple(segment_features)
        self.ttl_seconds = float(ttl_seconds)
        self.max_rows = max_rows
        self._file = Path(state_dir) / FILENAME
        # The SQLite file (None with PostgreSQL), and what messages name: the file, or the URL without its password.
        self.path: Path | None = None
        if url is None:
            self.path = self._file
            self.location, setting = str(self._file), "SIDECAR_STATE_DIR"
            self._encode_row, size = sqlite.encode, sqlite.encoded_bytes
            self._encode_shadow, shadow_size = sqlite.encode_shadow, sqlite.shadow_bytes
        else:
            from sidecar.store import postgres  # only now: choosing SQLite never imports the driver

            self.location, setting = mask_url(url), "SIDECAR_STATE_URL"
            self._encode_row, size = postgres.encode, postgres.encoded_bytes
            self._encode_shadow, shadow_size = postgres.encode_shadow, postgres.shadow_bytes
        self._leader_interval = leader_interval
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._buffer = Buffer(buffer_rows, buffer_bytes, size)
        # Fills only in shadow mode; as bounded as the predictions' own.
        self._shadow = Buffer(buffer_rows, buffer_bytes, shadow_size)
        self._health = Health(self.location, setting, buffer_rows=buffer_rows)
        self._writer = Writer(
            self._buffer,
            self._health,
            url=url,
            file=self._file,
            model=model,
            ttl_seconds=self.ttl_seconds,
            max_rows=max_rows,
            batch_rows=batch_rows,
            clock=clock,
            shadow=self._shadow,
        )
        self._wake = asyncio.Event()
        # A thread of its own: the drivers block, and a slow disk or database must not starve
        # the loop's default executor. One thread also means one connection, no locks.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="prediction-store", initializer=lower_priority
        )
        self._leadership: Leadership | None = None  # the leadership thread's alone (PostgreSQL)
        self._leader_executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = False
        self._dropped = {"buffer_full": 0, "shutdown": 0}
        self._unencodable = 0  # the loop's share of failed: records encode() raised on
        # The loop's share of shadow_unstored: the challenger's rows refused before the writer had them.
        self._shadow_unstored = dict.fromkeys(SHADOW_UNSTORED, 0)

    @property
    def shared(self) -> bool:
        """Whether every replica writes to this store (PostgreSQL), rather than each to its own file."""
        return self._url is not None

    def status(self) -> dict[str, object]:
        """The store's part of ``/readyz``: informational, since a store fault never makes the model unready.

        ``{"backend": "postgresql", "state": "ok" | "degraded", "leader": true}``; degraded while
        the database cannot be used (predictions wait in the buffer, labels are refused).
        """
        return {
            "backend": "postgresql" if self.shared else "sqlite",
            "state": "ok" if self.available else "degraded",
            "leader": self.is_leader,
        }

    @property
    def is_leader(self) -> bool:
        """Whether this replica computes the fleet's figures and evicts: always with SQLite; with
        PostgreSQL, while it holds the leader lock (:mod:`.leader`). Cheap: a bool."""
        if self._url is None:
            return True
        leadership = self._leadership
        return not self._closed and leadership is not None and leadership.is_leader

    @property
    def available(self) -> bool:
        """False while the last attempt to use the database failed (for ``/readyz``'s degraded store)."""
        return self._health.available

    async def start(self) -> None:
        """Open or create the store and start the background writer (and, with PostgreSQL, the leadership).

        Raises :class:`StoreError` naming ``SIDECAR_STATE_DIR`` and the file,
        when it cannot be opened, is not a database, or has another schema;
        or naming ``SIDECAR_STATE_URL`` (its password masked) for a malformed
        URL, a failed login, a missing database or a newer schema. A
        PostgreSQL server that cannot be reached does not stop start-up: the
        model must serve. The store logs it, buffers, and keeps trying.
        """
        try:
            await self._call(self._writer.open)
        except BaseException:
            self._closing = self._closed = True
            self._dropped["shutdown"] += len(self._buffer.drain())
            self._shadow_unstored["shutdown"] += len(self._shadow.drain())
            self._executor.shutdown(wait=False)
            raise
        self._tasks.append(self._spawn(self._run(), "prediction-store"))
        if self._url is not None:
            from sidecar.store import postgres
            from sidecar.store.leader import Leadership, leader_key

            self._leader_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="prediction-store-leader", initializer=lower_priority
            )
            connect = functools.partial(
                postgres.Database.connect,
                self._url,
                ttl_seconds=self.ttl_seconds,
                max_rows=self.max_rows,
                model=self.model,
                role="leader",
            )
            self._leadership = Leadership(connect, leader_key(self.model), self.location)
            if self._writer.connected:
                # A replica alone leads as soon as it has started.
                await self._lead(self._leadership.round)
            self._tasks.append(self._spawn(self._leading(), "prediction-store-leader"))

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
        buffer = self._buffer
        self._dropped["buffer_full"] += buffer.offer(rows, starts)
        if buffer.waiting >= self._batch_rows or buffer.bytes * 2 >= buffer.max_bytes:
            self._wake.set()

    def add_shadow(self, experiment: str, records: Sequence[PredictionRecord]) -> None:
        """Buffer a shadow ``experiment``'s challenger records for writing beside control's predictions.

        Each record is keyed by control's request id and row and dated by
        control's prediction time (:mod:`.shadow`). As :meth:`add`: O(rows),
        never blocks, never raises; an answer's rows (consecutive, from row 0)
        are taken or refused whole, and what is refused or cannot be encoded
        is counted in ``counts().shadow_unstored``.
        """
        unstored = self._shadow_unstored
        if self._closing:
            unstored["shutdown"] += len(records)
            return
        rows: list[tuple[Any, ...]] = []
        starts: list[int] = []
        encode = self._encode_shadow
        for record in records:
            if record.row == 0 or not starts:
                starts.append(len(rows))
            try:
                rows.append(encode(record, experiment))
            except Exception:
                unstored["failed"] += 1
        if not rows:
            return
        buffer = self._shadow
        unstored["buffer_full"] += buffer.offer(rows, starts)
        if buffer.waiting >= self._batch_rows or buffer.bytes * 2 >= buffer.max_bytes:
            self._wake.set()

    def _encode(self, records: Sequence[PredictionRecord]) -> tuple[list[tuple[Any, ...]], list[int]]:
        """The records' rows, and where in that list each exchange starts."""
        rows: list[tuple[Any, ...]] = []
        starts: list[int] = []
        names = self.segment_features
        encode = self._encode_row
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
                        self.location,
                        exc_info=True,
                    )
        return rows, starts

    @property
    def pending_bytes(self) -> int:
        """The buffer's size in bytes, as the backend's ``encoded_bytes`` estimates it."""
        return self._buffer.bytes

    async def flush(self) -> None:
        """Write what is buffered now. Failures are counted (``failed``), never raised; with PostgreSQL
        unreachable, the rows stay buffered."""
        await self._call(self._writer.flush)

    async def attach_labels(self, items: Sequence[LabelItem]) -> list[Outcome]:
        """Join labels to their predictions, in one transaction: one :class:`Outcome` per item, in order.

        Buffered predictions are written first. Raises :class:`StoreError` if
        the database fails or cannot be reached (within a few seconds), with
        nothing of the batch stored, so the caller may retry.
        """
        return await self._call(self._writer.attach, items)

    async def labelled(self, since: float, model: str | None = None) -> list[Labelled]:
        """Labelled predictions made at or after ``since`` (prediction time), oldest first.

        Optionally of one model; with PostgreSQL, every replica's. Raises :class:`StoreError` if the database fails.
        """
        return await self._call(self._writer.query, lambda db: db.labelled(since, model))

    async def coverage(self, since: float, model: str | None = None) -> Coverage:
        """Predictions made at or after ``since``, and how many have a label."""
        return await self._call(self._writer.query, lambda db: db.coverage(since, model))

    async def label_marker(self, since: float, model: str | None = None) -> tuple[int, int]:
        """A cheap pair that changes whenever a labelled prediction enters or leaves the window ``since``.

        (labelled predictions, the sum of their label numbers), read from an
        index: a leader recomputes performance only when it changed.
        """
        return await self._call(self._writer.query, lambda db: db.label_marker(since, model))

    async def estimated(self, since: float, model: str | None = None) -> dict[str, Estimate]:
        """Per variant, the accuracy estimated from confidence over every prediction made at or after ``since``."""
        return await self._call(self._writer.query, lambda db: db.estimated(since, model))

    async def attach_outcomes(self, experiment: str, items: Sequence[object], *, arms: Sequence[str]) -> list[Outcome]:
        """Store an experiment's business outcomes, in one transaction: one :class:`Outcome` per item, in order.

        ``items`` are :class:`sidecar.experiments.outcomes.OutcomeItem`; ``arms``
        the experiment's variants. An outcome joins the stored prediction of its
        request id (and row), or of its unit, in one of the arms (``joined``,
        with the arm as ``variant``); the first outcome of a key wins
        (``duplicate``); otherwise it is ``unmatched`` and not stored, or
        ``invalid`` (:mod:`.experiment`). Buffered predictions are written
        first. Raises :class:`StoreError` if the database fails or cannot be
        reached, with nothing of the batch stored, so the caller may retry.
        """
        return await self._call(self._writer.attach_outcomes, experiment, tuple(arms), items)

    async def experiment_units(
        self, arms: Sequence[str], *, since: float, model: str | None = None
    ) -> npt.NDArray[np.int64]:
        """Per arm (rows, in the order given), the analysis units captured at or after ``since``: columns
        (distinct units, requests routed without one), for the sample-ratio check on capture."""
        arms = tuple(arms)
        return await self._call(self._writer.query, lambda db: db.experiment_units(arms, since, model))

    async def outcome_sums(
        self,
        experiment: str,
        metric: str,
        arms: Sequence[str],
        *,
        since: float,
        period_seconds: float,
        calendar: bool,
        model: str | None = None,
    ) -> UnitSums:
        """One outcome metric's sums per arm over its analysis units exposed at or after ``since``, by segment and
        by period since first exposure (``calendar``: from the window's first exposure), summed by the database.

        See :mod:`.experiment` for the analysis units and the sums.
        """
        arms = tuple(arms)
        return await self._call(
            self._writer.query,
            lambda db: db.outcome_sums(experiment, metric, arms, since, model, period_seconds, calendar),
        )

    async def labelled_exposures(
        self,
        arms: Sequence[str],
        *,
        since: float,
        period_seconds: float,
        calendar: bool,
        model: str | None = None,
    ) -> LabelledExposures:
        """The labelled predictions of the arms made at or after ``since``, with their analysis unit, its segment
        and the row's period, for a label metric's sums (:func:`~.experiment.unit_sums`)."""
        arms = tuple(arms)
        return await self._call(
            self._writer.query, lambda db: db.labelled_exposures(arms, since, model, period_seconds, calendar)
        )

    async def shadow_pairs(
        self, experiment: str, *, control: str, since: float, model: str | None = None
    ) -> ShadowPairs:
        """A shadow ``experiment``'s challenger rows paired with ``control``'s predictions made at or after
        ``since``, control's labels with them, and control's predictions in the window (:mod:`.shadow`).

        Buffered rows are written first. Raises :class:`StoreError` if the database fails.
        """
        return await self._call(self._writer.query, lambda db: db.shadow_pairs(experiment, control, since, model))

    async def experiment_started(self, name: str, now: float) -> float:
        """When the experiment ``name`` first ran: ``now`` the first time it is asked, the same time ever after.

        Kept in the store, so it is the same after a restart and, with
        PostgreSQL, on every replica (the first to record it wins): an
        experiment's analysis window starts there. Never evicted, and keyed by
        the name alone: to start an experiment afresh, rename it. Raises
        :class:`StoreError` if the database fails or cannot be reached.
        """
        return await self._call(self._writer.query, lambda db: db.experiment_started(name, now))

    async def evict(self) -> tuple[int, int]:
        """Evict now what is past the TTL, then the oldest past ``max_rows``: counts (ttl, max_rows).

        With SQLite, the writer also does this with every batch, and every
        minute without traffic. With PostgreSQL only the leader evicts, once
        a minute; elsewhere this returns (0, 0).
        """
        if self._url is None:
            return await self._call(self._writer.evict)
        return await self._lead(self._evict_leading)

    def counts(self) -> StoreCounts:
        """The counters, for ``/metrics``. Cheap: no SQL."""
        writer = self._writer
        dropped = dict(self._dropped)
        dropped["shutdown"] += writer.unwritten_at_close
        return StoreCounts(
            rows=writer.rows,
            pending=len(self._buffer),
            dropped=dropped,
            evicted=dict(writer.evicted),
            failed=writer.failed + self._unencodable,
            conflicts=writer.conflicts,
            labels=dict(writer.labels),
            label_failures=writer.label_failures,
            outcomes=dict(writer.outcomes),
            outcome_failures=writer.outcome_failures,
            shadow_unstored={reason: n + writer.shadow_unstored[reason] for reason, n in self._shadow_unstored.items()},
        )

    async def close(self, deadline: float) -> None:
        """Stop taking records, write the buffer until ``deadline`` (a ``loop.time()``), close the connections.

        Rows still buffered at the deadline are counted as dropped (``shutdown``).
        A batch being written then is left to finish in the writer thread,
        which closes the connection after it. With PostgreSQL, the leader lock
        is released, and another replica takes it at its next round. Safe to
        call more than once.
        """
        if self._closed:
            return
        self._closing = self._writer.closing = True
        loop = asyncio.get_running_loop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        final: list[asyncio.Future[None]] = [loop.run_in_executor(self._executor, self._writer.close)]
        if self._leader_executor is not None and self._leadership is not None:
            final.append(loop.run_in_executor(self._leader_executor, self._leadership.close))
        await asyncio.wait(final, timeout=max(0.0, deadline - loop.time()))
        # Taking them also stops the writer, which writes only what is still waiting.
        self._dropped["shutdown"] += len(self._buffer.drain())
        self._shadow_unstored["shutdown"] += len(self._shadow.drain())
        self._executor.shutdown(wait=False)
        if self._leader_executor is not None:
            self._leader_executor.shutdown(wait=False)
        self._closed = True

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"the prediction store {self.location} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _lead(self, function: Callable[[], T]) -> T:
        executor = self._leader_executor
        if self._closed or executor is None:
            raise StoreError(f"the prediction store {self.location} is closed")
        future: Future[T] = executor.submit(function)
        return await asyncio.wrap_future(future)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(work, name=name)
        task.add_done_callback(self._task_done)
        return task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_evict = loop.time() + _EVICT_EVERY_SECONDS
        health = self._health
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_seconds):
                    await self._wake.wait()
            self._wake.clear()
            if self._buffer.waiting or self._shadow.waiting:
                await self._call(self._writer.flush)
            elif self._url is not None and (not health.available or health.idle_for() >= _PROBE_SECONDS):
                # No traffic: still notice an outage, or the end of one, for `available`.
                if health.due(on_demand=False):
                    await self._call(self._writer.probe)
            if self._url is None and loop.time() >= next_evict:
                next_evict = loop.time() + _EVICT_EVERY_SECONDS
                # Already counted and logged by the writer; the next round tries again.
                with contextlib.suppress(StoreError):
                    await self._call(self._writer.evict)

    async def _leading(self) -> None:
        """Every ``leader_interval``: keep or try the leader lock; while leading, evict once a minute."""
        loop = asyncio.get_running_loop()
        leadership = self._leadership
        if leadership is None:
            return
        next_evict = loop.time()  # the first round that leads evicts what built up meanwhile
        while True:
            await asyncio.sleep(self._leader_interval)
            if not self._writer.connected:
                continue  # until the writer has created the schema, there is nothing to lead
            if not await self._lead(leadership.round) or loop.time() < next_evict:
                continue
            next_evict = loop.time() + _EVICT_EVERY_SECONDS
            with contextlib.suppress(StoreError):  # logged; the next round tries again
                await self._lead(self._evict_leading)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # The tasks catch the database's failures themselves; ending otherwise is a bug, and the buffer will fill.
        if not task.cancelled() and (exc := task.exception()) is not None:
            name = task.get_name()
            logger.error("prediction store %s: %s stopped on an unexpected error", self.location, name, exc_info=exc)

    # Below: the leadership thread only (PostgreSQL).

    def _evict_leading(self) -> tuple[int, int]:
        leadership = self._leadership
        if leadership is None:
            return 0, 0
        try:
            ttl, oldest = leadership.evict(self._clock())
        except StoreError as exc:
            logger.warning("prediction store %s: eviction failed, tried again in a minute (%s)", self.location, exc)
            raise StoreError(f"the prediction store {self.location} could not evict: {exc}") from exc
        self._writer.evicted_by_leader(ttl, oldest, leadership.rows)
        return ttl, oldest
