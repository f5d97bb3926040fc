"""Whether the store's database answers, when to try it again, and one log line per change.

A database that fails is logged once when the outage begins and once when it
ends, never once per batch. A database that cannot be reached (PostgreSQL
down, restarting, slower than its statement timeout) is tried again after a
backoff: 0.5 s, doubling to 30 s, reset by the first success. Between
attempts the store does not touch it: buffered predictions wait, and a label
batch is refused at once, unless no attempt was made for
:data:`ON_DEMAND_SECONDS`, when the batch tries itself (a label POST is a
good moment to notice that the database is back).

One writer: the store's writer thread. The loop reads :attr:`Health.available`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sidecar.store.backend import Unavailable
from sidecar.store.values import StoreError

__all__ = ["BACKOFF_INITIAL_SECONDS", "BACKOFF_MAX_SECONDS", "ON_DEMAND_SECONDS", "Health"]

logger = logging.getLogger("sidecar.store")

BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
ON_DEMAND_SECONDS = 1.0


class Health:
    """The state of one database connection as the writer thread sees it.

    Usage, in the writer thread::

        health = Health("postgresql://sidecar:***@db/monitoring", "SIDECAR_STATE_URL", buffer_rows=10_000)
        if health.due(on_demand=False):
            health.attempt()
            try:
                db.write(rows, now)
            except Unavailable as exc:
                health.failed(exc)          # logs once per outage; the next attempt waits for the backoff
            else:
                health.succeeded()          # logs the recovery, resets the backoff
    """

    def __init__(
        self, location: str, setting: str, *, buffer_rows: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.location = location
        self.setting = setting
        self.buffer_rows = buffer_rows
        self.available = True  # False while the last attempt failed
        self._clock = clock
        self._backoff = BACKOFF_INITIAL_SECONDS
        self._retry_at = 0.0  # no attempt before, while unreachable
        self._last_attempt = 0.0
        self._last_success = clock()
        self._outage_started = 0.0

    def due(self, *, on_demand: bool) -> bool:
        """Whether to try the database now: yes unless it is unreachable and its backoff has not run out.

        ``on_demand``: a caller waiting for an answer (a label batch, a query)
        may try sooner, once per :data:`ON_DEMAND_SECONDS`.
        """
        now = self._clock()
        if now >= self._retry_at:
            return True
        return on_demand and now - self._last_attempt >= ON_DEMAND_SECONDS

    def attempt(self) -> None:
        """An attempt begins (one that :meth:`due` allowed)."""
        self._last_attempt = self._clock()

    def idle_for(self) -> float:
        """Seconds since the database last answered."""
        return self._clock() - self._last_success

    def succeeded(self) -> None:
        """The database answered: the outage, if any, is over."""
        now = self._clock()
        if not self.available:
            logger.info(
                "prediction store %s was failing for %.1f s and has recovered",
                self.location,
                max(0.0, now - self._outage_started),
            )
        self.available = True
        self._backoff = BACKOFF_INITIAL_SECONDS
        self._retry_at = 0.0
        self._last_success = now

    def failed(self, problem: Exception) -> None:
        """The database failed; :class:`Unavailable` also puts off the next attempt by the backoff."""
        now = self._clock()
        if isinstance(problem, Unavailable):
            self._last_attempt = now
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_SECONDS)
        if not self.available:
            return
        self.available = False
        self._outage_started = now
        if isinstance(problem, Unavailable):
            logger.warning(
                "prediction store %s (%s) is unreachable (%s); predictions wait in the buffer (up to %d rows) and are"
                " written when it is back, labels are refused; retrying with backoff up to %.0f s",
                self.location,
                self.setting,
                problem,
                self.buffer_rows,
                BACKOFF_MAX_SECONDS,
            )
        else:
            logger.warning(
                "prediction store %s is failing (%s); predictions are counted as failed, labels refused",
                self.location,
                problem,
                exc_info=not isinstance(problem, StoreError),  # anything else is a bug: show where
            )
