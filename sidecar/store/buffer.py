"""The store's buffer: encoded rows waiting for the writer thread, bounded in rows and in bytes.

The event loop offers rows (:meth:`Buffer.offer`) and never waits; the writer
thread takes a batch (:meth:`Buffer.take`), and when it is done with it,
written or failed, says so (:meth:`Buffer.done`). A batch the database could
not take because it is unreachable goes back to the front
(:meth:`Buffer.put_back`), in order, to be written when it is back. Until a
batch is done it still counts against both bounds, so the buffer never holds
more than its bounds while the writer retries.

The bounds hold whole exchanges: an exchange (its rows are consecutive, from
row 0) that does not fit is refused whole, since a partial one would skew
per-request statistics; one larger than the byte bound still passes an empty
buffer, which it would otherwise never enter.

Thread safety: the deque's appends and pops are atomic. The counts each
side reads without the lock may be stale, but never below the truth: a
taker counts a batch in flight before popping it, and the byte total, which
both sides change, is changed under a lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Buffer"]

Row = tuple[Any, ...]


class Buffer:
    """Encoded rows bounded by ``max_rows`` and ``max_bytes`` (``size`` estimates a row's bytes).

    Usage::

        buffer = Buffer(10_000, 8 << 20, sqlite.encoded_bytes)
        dropped = buffer.offer(rows, starts)      # on the loop: rows of the exchanges that did not fit
        batch = buffer.take(1_000)                # in the writer thread
        buffer.done(batch)                        # written or failed; or buffer.put_back(batch) to retry
    """

    def __init__(self, max_rows: int, max_bytes: int, size: Callable[[Row], int]) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._size = size
        self._waiting: deque[Row] = deque()
        self._in_flight = 0  # rows taken and not yet done; the taker's alone to change
        self._bytes = 0  # of the waiting and the in-flight rows
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Rows not yet written: waiting, and taken by the writer but not done."""
        return len(self._waiting) + self._in_flight

    @property
    def waiting(self) -> int:
        """Rows waiting to be taken."""
        return len(self._waiting)

    @property
    def bytes(self) -> int:
        """The bytes of the rows not yet written, as ``size`` estimates them."""
        return self._bytes

    def offer(self, rows: list[Row], starts: Sequence[int]) -> int:
        """Append the exchanges that fit (``starts``: where each begins in ``rows``); the rows refused."""
        size = sum(map(self._size, rows))
        if len(self) + len(rows) <= self.max_rows and self._bytes + size <= self.max_bytes:
            self._append(rows, size)
            return 0
        # Nearly full: take the exchanges one by one, as if each came alone.
        refused = 0
        for start, end in zip(starts, [*starts[1:], len(rows)], strict=True):
            exchange = rows[start:end]
            size = sum(map(self._size, exchange))
            if len(self) + len(exchange) > self.max_rows or (self._bytes + size > self.max_bytes and len(self)):
                refused += len(exchange)
            else:
                self._append(exchange, size)
        return refused

    def take(self, limit: int) -> list[Row]:
        """Up to ``limit`` rows from the front, in flight until :meth:`done` or :meth:`put_back`."""
        count = min(limit, len(self._waiting))
        self._in_flight += count  # first, so that the bounds never see the rows as gone
        taken: list[Row] = []
        waiting = self._waiting
        with contextlib.suppress(IndexError):  # drain() on the loop may have emptied it first
            while len(taken) < count:
                taken.append(waiting.popleft())
        self._in_flight -= count - len(taken)
        return taken

    def done(self, rows: list[Row]) -> None:
        """The writer is done with rows it took: written, failed or given up; they leave the bounds."""
        self._release(sum(map(self._size, rows)))
        self._in_flight -= len(rows)

    def put_back(self, rows: list[Row]) -> None:
        """Rows taken and not written return to the front, in their order, to be taken again."""
        self._waiting.extendleft(reversed(rows))
        self._in_flight -= len(rows)

    def drain(self) -> list[Row]:
        """Every waiting row, taken for good (at close, to count them)."""
        drained: list[Row] = []
        with contextlib.suppress(IndexError):
            while True:
                drained.append(self._waiting.popleft())
        self._release(sum(map(self._size, drained)))
        return drained

    def _append(self, rows: list[Row], size: int) -> None:
        # Counted before the rows are visible, so a taker's subtraction never comes first.
        with self._lock:
            self._bytes += size
        self._waiting.extend(rows)

    def _release(self, size: int) -> None:
        with self._lock:
            self._bytes -= size
