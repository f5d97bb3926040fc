"""Volume: traffic per time slice against an expected rate, and missing periods.

**Slices** are aligned to multiples of ``slice_seconds`` on the monitor's
clock: slice k is ``[k·s, (k+1)·s)``. A record counts in the slice that is open
when the monitor observes it; the capture queue delays it by milliseconds,
a slice lasts a minute.

**Volume** is the sum of the records' weights (``1/p``): an estimate of the rows
the model served whatever the sampling, so the expected rate is in rows of
traffic per second, not in sampled records. At a sample rate of 1 it is the
record count. (Violation counts, by contrast, count records: see the package
docstring.)

**Verdict.** A slice is judged when it closes, against the expectation as it
stood before that slice (so a spike does not hide itself)::

    low      actual < LOW_RATIO  (0.5) × expected
    high     actual > HIGH_RATIO (2.0) × expected
    ok       otherwise
    unknown  no expectation yet

The expectation per slice is ``expected_rate × slice_seconds`` when a rate is
configured. Otherwise it is learned from the non-empty closed slices: the
n-th updates it by ``e += max(EWMA_ALPHA, 1/n) · (actual − e)``, which is the
plain mean of the first 10 slices and then an EWMA with α = 0.1 (the last 10
to 20 slices weigh most). There is no expectation until ``LEARN_SLICES``
slices are learned. Empty slices are not learned, so an outage does not teach
that zero is normal; slices judged low or high are, so a lasting change of
traffic becomes the new normal within some 20 slices.

**Missing periods.** A closed slice with no record is a missing period:
``missing_periods_total`` counts them, ``missing_run`` is the current run of
consecutive ones (back to 0 once a slice has traffic). An empty slice is also
judged ``low`` when there is an expectation.

The slice open at start-up is partial: it is never judged, learned or counted
missing. If the clock steps back, records count in the open slice until the
clock passes it. A long quiet gap costs O(1): its empty slices are counted,
not walked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "Verdict",
    "LOW_RATIO",
    "HIGH_RATIO",
    "EWMA_ALPHA",
    "LEARN_SLICES",
    "SliceTally",
    "VolumeState",
    "VolumeTracker",
]

Verdict = Literal["ok", "low", "high", "unknown"]

LOW_RATIO: Final = 0.5
HIGH_RATIO: Final = 2.0
EWMA_ALPHA: Final = 0.1
LEARN_SLICES: Final = 5


@dataclass(frozen=True, slots=True)
class SliceTally:
    """What one closed slice saw. ``records`` and ``bad_records`` are counts, ``weight`` the volume."""

    start: float
    records: int = 0
    bad_records: int = 0  # records with at least one violation
    violations: int = 0
    weight: float = 0.0


@dataclass(frozen=True, slots=True)
class VolumeState:
    """The volume facts of a snapshot; rates are per second of the slice."""

    slice_seconds: float
    expected_source: Literal["configured", "learned"]
    expected_per_second: float | None  # None while learning
    actual_per_second: float | None  # the last closed slice's; None before one closed
    verdict: Verdict  # of the last judged slice
    low_total: int
    high_total: int
    missing_periods_total: int
    missing_run: int
    current_records: int  # records in the open slice so far


class VolumeTracker:
    """Tally slices as the clock moves and judge each closed slice.

    Usage::

        volume = VolumeTracker(slice_seconds=60.0, expected_rate=None, start=clock())
        volume.advance(clock())            # close the slices that ended
        volume.add(records=3, bad_records=1, violations=2, weight=3.0)
        volume.state().verdict             # "unknown" until LEARN_SLICES slices are learned
    """

    def __init__(self, *, slice_seconds: float, expected_rate: float | None, start: float) -> None:
        if not slice_seconds > 0 or not math.isfinite(slice_seconds):
            raise ValueError(f"slice_seconds must be a positive number, got {slice_seconds!r}")
        if expected_rate is not None and (not expected_rate > 0 or not math.isfinite(expected_rate)):
            raise ValueError(f"expected_rate must be a positive number or None, got {expected_rate!r}")
        self.slice_seconds = slice_seconds
        self.expected_rate = expected_rate
        self._index = math.floor(start / slice_seconds)
        self._partial = True
        self._records = 0
        self._bad = 0
        self._violations = 0
        self._weight = 0.0
        self._learned = 0.0
        self._learned_n = 0
        self.last: SliceTally | None = None
        self.verdict: Verdict = "unknown"
        self.low_total = 0
        self.high_total = 0
        self.missing_total = 0
        self.missing_run = 0

    @property
    def expected_per_slice(self) -> float | None:
        if self.expected_rate is not None:
            return self.expected_rate * self.slice_seconds
        return self._learned if self._learned_n >= LEARN_SLICES else None

    def add(self, *, records: int, bad_records: int, violations: int, weight: float) -> None:
        """Count into the open slice; call :meth:`advance` first."""
        self._records += records
        self._bad += bad_records
        self._violations += violations
        self._weight += weight

    def advance(self, now: float) -> None:
        """Close every slice that ended by ``now``."""
        index = math.floor(now / self.slice_seconds)
        if index <= self._index:
            return
        self._close()
        empty = index - self._index - 1
        if empty:
            self._close_empty(empty, (index - 1) * self.slice_seconds)
        self._index = index
        self._partial = False
        self._records = self._bad = self._violations = 0
        self._weight = 0.0

    def state(self) -> VolumeState:
        expected = self.expected_per_slice
        size = self.slice_seconds
        return VolumeState(
            slice_seconds=size,
            expected_source="configured" if self.expected_rate is not None else "learned",
            expected_per_second=None if expected is None else expected / size,
            actual_per_second=None if self.last is None else self.last.weight / size,
            verdict=self.verdict,
            low_total=self.low_total,
            high_total=self.high_total,
            missing_periods_total=self.missing_total,
            missing_run=self.missing_run,
            current_records=self._records,
        )

    def _close(self) -> None:
        weight = self._weight
        self.last = SliceTally(self._index * self.slice_seconds, self._records, self._bad, self._violations, weight)
        if self._partial:
            return
        expected = self.expected_per_slice
        if expected is None:
            self.verdict = "unknown"
        elif weight < LOW_RATIO * expected:
            self.verdict = "low"
            self.low_total += 1
        elif weight > HIGH_RATIO * expected:
            self.verdict = "high"
            self.high_total += 1
        else:
            self.verdict = "ok"
        if self._records == 0:
            self.missing_total += 1
            self.missing_run += 1
            return
        self.missing_run = 0
        if self.expected_rate is None:
            self._learned_n += 1
            self._learned += max(EWMA_ALPHA, 1.0 / self._learned_n) * (weight - self._learned)

    def _close_empty(self, count: int, last_start: float) -> None:
        """``count`` whole slices with no record, the last starting at ``last_start``."""
        self.last = SliceTally(last_start)
        self.missing_total += count
        self.missing_run += count
        if self.expected_per_slice is None:
            self.verdict = "unknown"
        else:
            self.verdict = "low"
            self.low_total += count
