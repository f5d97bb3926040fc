"""A one-line progress bar for long builds: share read, rows, rows/s and time left.

It draws only when asked to (the command enables it when stderr is a
terminal, or with ``--progress``), at most ten times a second, and
:meth:`Progress.close` wipes the line so the summary that follows stands
alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_duration"]

BAR_WIDTH = 24


class Progress:
    """Redraws ``label [#####-----]  48%  4,812,000 rows  301,522 rows/s  ETA 0:17`` in place.

    Usage::

        progress = Progress(sys.stderr, label="train.csv", enabled=sys.stderr.isatty())
        progress.update(0.5, rows=1_000_000)
        progress.close()
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str,
        enabled: bool,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.interval = interval
        self._clock = clock
        self._start = clock()
        self._last = -interval
        self._width = 0

    def update(self, fraction: float, *, rows: int) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if now - self._last < self.interval and fraction < 1.0:
            return
        self._last = now
        self._draw(self.render(fraction, rows, now - self._start))

    def render(self, fraction: float, rows: int, elapsed: float) -> str:
        fraction = min(max(fraction, 0.0), 1.0)
        done = int(fraction * BAR_WIDTH)
        bar = "#" * done + "-" * (BAR_WIDTH - done)
        rate = rows / elapsed if elapsed > 0 else 0.0
        eta = format_duration(elapsed * (1 - fraction) / fraction) if fraction > 0 else "?"
        return f"{self.label} [{bar}] {fraction:4.0%}  {rows:,} rows  {rate:,.0f} rows/s  ETA {eta}"

    def _draw(self, line: str) -> None:
        # Pad over the previous line: it may have been longer.
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def format_duration(seconds: float) -> str:
    """``0:07``, ``12:30``, ``1:02:03``."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
