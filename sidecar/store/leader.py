"""Which replica leads: the holder of a PostgreSQL advisory lock, on a connection of its own.

The fleet's figures that do not add up across replicas (performance, label
coverage and delay, the estimated accuracy) are computed once, by the leader,
and so is eviction. The leader is whichever replica holds the session-level
advisory lock :func:`leader_key` of its model. :class:`Leadership` runs in a
thread of its own, on a connection that is not the writer's, so a batch
being written never delays the lock, and a round (:meth:`Leadership.round`)
every interval:

- not leading: ``pg_try_advisory_lock``, which never waits;
- leading: ``SELECT 1``. If the connection fails, leadership is dropped at
  once, and the next round connects again and tries for the lock.

The lock belongs to the session: when the leader's process dies, or its
session is ended (``pg_terminate_backend``), the server releases it, and
another replica takes it at its next round, within one interval. A replica
whose node vanished keeps the lock until the server's TCP keepalives give up
on it, about :data:`~sidecar.store.postgres.KEEPALIVE_SECONDS`. Until the old
leader's own round notices, two replicas may both believe they lead, for at
most one interval: the figures they export are then computed from the same
rows, and an eviction round may run on both (deleting a key twice is harmless;
the ``max_rows`` excess may be deleted twice over once).

Leadership needs session-level connections: a pooler in transaction mode
(PgBouncer's ``pool_mode = transaction``) would hand the lock to whichever
client ran the statement. Point ``SIDECAR_STATE_URL`` at PostgreSQL itself,
or at a pooler in session mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sidecar.store.backend import Unavailable
from sidecar.store.postgres import Database
from sidecar.store.schema import lock_key
from sidecar.store.values import StoreError

__all__ = ["Leadership", "leader_key"]

logger = logging.getLogger("sidecar.store")


def leader_key(model: str | None) -> int:
    """The leader lock's key: :func:`~sidecar.store.schema.lock_key` of ``"ml-sidecar leader <model>"``.

    One leader per model, so sidecars of several models may share a database;
    without a model, ``"ml-sidecar leader"``, one leader per database.
    """
    return lock_key("ml-sidecar leader" if model is None else f"ml-sidecar leader {model}")


class Leadership:
    """The advisory lock on a connection of its own, and the eviction only its holder runs. One thread only.

    Usage::

        leadership = Leadership(lambda: Database.connect(url, ..., role="leader"), leader_key("iris"), location)
        leadership.round()                       # every interval
        if leadership.is_leader:
            ttl, oldest = leadership.evict(time.time())
        leadership.close()                       # the lock goes with the session
    """

    def __init__(self, connect: Callable[[], Database], key: int, location: str) -> None:
        self._connect = connect
        self.key = key
        self.location = location
        self.is_leader = False  # written by this thread only; read by the loop without a lock
        self.rows: int | None = None  # the table's count after the last eviction, None before one
        self._db: Database | None = None

    def round(self) -> bool:
        """Keep the lock (checking the connection) or try to take it, once; whether this replica leads now."""
        try:
            if self._db is None or self._db.broken:
                self._disconnect()
                self._db = self._connect()
            if self.is_leader:
                self._db.ping()
            elif self._db.try_lock(self.key):
                self.is_leader = True
                logger.info("prediction store %s: this replica leads (advisory lock %d)", self.location, self.key)
        except StoreError as exc:
            self._lose(exc)
        return self.is_leader

    def evict(self, now: float) -> tuple[int, int]:
        """Evict as the leader, in batches: counts (ttl, max_rows); (0, 0) when not leading.

        :class:`Unavailable` drops leadership and is raised, as is any other
        :class:`StoreError`, for the caller to count.
        """
        db = self._db
        if not self.is_leader or db is None:
            return 0, 0
        try:
            counts = db.evict(now)
        except Unavailable as exc:
            self._lose(exc)
            raise
        self.rows = db.rows
        return counts

    def close(self) -> None:
        """Close the connection, which releases the lock; another replica takes it at its next round."""
        self.is_leader = False
        self._disconnect()

    def _lose(self, problem: Exception) -> None:
        if self.is_leader:
            logger.warning("prediction store %s: this replica no longer leads (%s)", self.location, problem)
        self.is_leader = False
        self._disconnect()

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
