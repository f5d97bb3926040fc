"""The labelled window: the joined rows that performance is computed from, kept in memory.

Rows are keyed by (request id, row), so a row that arrives twice (a label
joined while the start-up query read the same row back) counts once.

The window goes by **prediction time**: the rows whose prediction was made in
the last ``seconds``, as labelled so far. It must be longer than the typical
label delay, or no prediction in it has a label yet. Past ``max_rows``, the
oldest predictions go first.

Why in memory, and not a query per evaluation: reading 100,000 labelled rows
back from SQLite costs 1.5 to 2 s, the metrics over them 0.2 to 0.3 s. The
rows come from the join itself (the store returns each joined prediction),
and from one query at start-up, so a restart keeps the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sidecar.store import Labelled

__all__ = ["LabelledWindow"]


class LabelledWindow:
    """The joined rows of the last ``seconds`` of predictions, at most ``max_rows`` of them.

    Usage::

        window = LabelledWindow(seconds=7 * 86400, max_rows=200_000)
        window.load(await store.labelled(time.time() - window.seconds, "iris"))   # at start-up
        window.add(outcome.joined for outcome in outcomes if outcome.joined)     # as labels join
        rows = window.take_changed(time.time())   # None when nothing changed since the last take
    """

    def __init__(self, seconds: float, max_rows: int) -> None:
        self.seconds = seconds
        self.max_rows = max_rows
        self.loaded = False  # read back from the store since start
        self._rows: dict[tuple[str, int], Labelled] = {}
        self._changed = True

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, rows: Iterable[Labelled]) -> None:
        """Take newly joined rows. O(rows); pruning waits for the next :meth:`take_changed`."""
        for row in rows:
            self._rows[row.request_id, row.row] = row
            self._changed = True

    def load(self, rows: Sequence[Labelled]) -> None:
        """Take the rows read back from the store (oldest first): the newest ``max_rows`` of them."""
        self.add(rows[-self.max_rows :])
        self.loaded = True
        self._changed = True

    def take_changed(self, now: float) -> list[Labelled] | None:
        """Prune to the window ending ``now``; then its rows if any came or went since the last call, else None."""
        self._prune(now)
        if not self._changed:
            return None
        self._changed = False
        return list(self._rows.values())

    def _prune(self, now: float) -> None:
        """Drop rows older than the window, then the oldest past ``max_rows``."""
        rows = self._rows
        start = now - self.seconds
        before = len(rows)
        if any(row.timestamp < start for row in rows.values()):
            self._rows = rows = {key: row for key, row in rows.items() if row.timestamp >= start}
        if len(rows) > self.max_rows:
            newest = sorted(rows.items(), key=lambda item: item[1].timestamp)[-self.max_rows :]
            self._rows = rows = dict(newest)
        if len(rows) != before:
            self._changed = True
