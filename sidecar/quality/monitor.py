"""The quality monitor: records in, violation counters, volume, freshness and snapshots out."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, Final

from sidecar.quality.checks import ALL, SCREEN_MIN, VOLUME_CHECKS, Check, Checker, Violation, label_pairs
from sidecar.quality.rules import QualityRules
from sidecar.quality.snapshot import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    Example,
    Freshness,
    QualitySnapshot,
    RecentQuality,
    keep,
)
from sidecar.quality.volume import VolumeTracker
from sidecar.records import PredictionRecord
from sidecar.reference import ReferenceProfile

__all__ = ["QualityMonitor", "DEFAULT_RANGE_TOLERANCE", "DEFAULT_SLICE_SECONDS", "DEFAULT_EXAMPLES"]

DEFAULT_RANGE_TOLERANCE: Final = 0.1
DEFAULT_SLICE_SECONDS: Final = 60.0
DEFAULT_EXAMPLES: Final = 100

# An example as observed: (timestamp, request id, feature, check, what keep() kept of the value).
_Pending = tuple[float, str, str, Check, Any]


class QualityMonitor:
    """Check every record against the reference profile and the rules; track volume and freshness.

    ``observe`` is a monitor-worker subscriber: O(expected features) per
    record, a full batch screened column by column (:meth:`Checker.check_batch`).
    ``clock`` gives Unix seconds (the records' timestamps are Unix seconds too,
    which freshness compares with); tests pass a fake.
    The monitor holds no lock: the worker and the evaluator share the event loop.

    With ``profile=None`` (the sidecar is still learning its reference) only
    rule-defined features, volume and freshness are checked; :meth:`set_profile`
    attaches a profile later.

    Usage::

        monitor = QualityMonitor(profile, rules=load_rules(path), range_tolerance=0.1,
                                 expected_rate=None, slice_seconds=60.0)
        worker.subscribe(monitor.observe)
        monitor.observe_label_time(label_timestamp)     # from the labels endpoint
        monitor.counts()[("age", "out_of_range")]       # for the metrics collector
        snapshot = monitor.snapshot()                   # for the evaluator and /api/v1/quality
    """

    def __init__(
        self,
        profile: ReferenceProfile | None,
        *,
        rules: QualityRules | None = None,
        range_tolerance: float = DEFAULT_RANGE_TOLERANCE,
        expected_rate: float | None = None,
        slice_seconds: float = DEFAULT_SLICE_SECONDS,
        examples: int = DEFAULT_EXAMPLES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not range_tolerance >= 0 or not math.isfinite(range_tolerance):
            raise ValueError(f"range_tolerance must be a number >= 0, got {range_tolerance!r}")
        if examples < 0:
            raise ValueError(f"examples must be >= 0, got {examples!r}")
        self.rules = rules if rules is not None else QualityRules()
        self.range_tolerance = range_tolerance
        self._clock = clock
        self._volume = VolumeTracker(slice_seconds=slice_seconds, expected_rate=expected_rate, start=clock())
        self._examples: deque[_Pending] = deque(maxlen=examples)
        self._counts: dict[tuple[str, str], int] = {}
        self._records_total = 0
        self._last_request: float | None = None
        self._last_label: float | None = None
        self._profile: ReferenceProfile | None = None
        self._checker = Checker((), check_unexpected=False)
        self.set_profile(profile)

    @property
    def profile(self) -> ReferenceProfile | None:
        return self._profile

    def set_profile(self, profile: ReferenceProfile | None) -> None:
        """Check against ``profile`` from now on.

        Counters already made are kept (a Prometheus counter must not vanish);
        the new profile's features get counters at 0. So the label set is the
        union of the profiles seen, bounded by configuration.
        """
        expectations = self.rules.expectations(profile, self.range_tolerance)
        # Without a profile there is no schema, so no name is unexpected.
        unexpected = profile is not None and "unexpected" not in self.rules.disable
        self._checker = Checker(expectations, check_unexpected=unexpected)
        self._profile = profile
        for pair in label_pairs([e.name for e in expectations]):
            self._counts.setdefault(pair, 0)

    def observe(self, records: Sequence[PredictionRecord]) -> None:
        """Check a batch of records; each record counts once, whatever its weight."""
        if not records:
            return
        volume = self._volume
        volume.advance(self._clock())
        latest = -math.inf if self._last_request is None else self._last_request
        weight = 0.0
        flagged: list[tuple[int, list[Violation]]]
        if len(records) < SCREEN_MIN:
            # A few records (a quiet moment): one by one, since the screen's fixed cost would outweigh it.
            check = self._checker.check
            flagged = []
            for i, record in enumerate(records):
                weight += record.weight
                if record.timestamp > latest:
                    latest = record.timestamp
                found = check(record.features)
                if found:
                    flagged.append((i, found))
        else:
            for record in records:
                weight += record.weight
                if record.timestamp > latest:
                    latest = record.timestamp
            flagged = self._checker.check_batch([record.features for record in records])
        violations = 0
        if flagged:
            violations = self._count(records, flagged)
        self._last_request = latest
        self._records_total += len(records)
        volume.add(records=len(records), bad_records=len(flagged), violations=violations, weight=weight)

    def _count(self, records: Sequence[PredictionRecord], flagged: list[tuple[int, list[Violation]]]) -> int:
        """Count the violations of the flagged records and keep examples of them; returns how many there were."""
        counts = self._counts
        violations = 0
        for _, found in flagged:
            violations += len(found)
            for label, _, check_name, _ in found:
                counts[label, check_name] += 1
        examples = self._examples
        if examples.maxlen:
            # The bounded list would push out at once all but the batch's last maxlen examples:
            # those are not built at all.
            skip = violations - examples.maxlen
            for i, found in flagged:
                if skip > 0:
                    if skip >= len(found):
                        skip -= len(found)
                        continue
                    found = found[skip:]
                    skip = 0
                record = records[i]
                # Cut now what traffic controls the length of, so the list stays small in memory.
                request_id = record.request_id[: MAX_ID_CHARS + 1]
                for _, name, check_name, value in found:
                    examples.append((record.timestamp, request_id, name[: MAX_NAME_CHARS + 1], check_name, keep(value)))
        return violations

    def observe_label_time(self, timestamp: float) -> None:
        """A label arrived (or was stamped) at ``timestamp``, Unix seconds: the label ingestion's hook."""
        if self._last_label is None or timestamp > self._last_label:
            self._last_label = timestamp

    @property
    def records_total(self) -> int:
        """Records checked since start; a counter."""
        return self._records_total

    def freshness(self, now: float | None = None) -> Freshness:
        """Seconds since the newest captured record and the newest label, at ``now`` (the clock by default).

        Records are the sampled ones: at low sample rates the proxy's
        ``mlsidecar_last_request_timestamp_seconds`` is the exact figure.
        """
        return Freshness.at(self._clock() if now is None else now, self._last_request, self._last_label)

    def counts(self, now: float | None = None) -> dict[tuple[str, str], int]:
        """Every (feature, check) counter, zeros included; a fresh dict, O(counters).

        Volume counters are brought up to ``now`` (the clock by default) first,
        so missing periods show even when no record arrives to close a slice.
        """
        self._volume.advance(self._clock() if now is None else now)
        out = dict(self._counts)
        volume = self._volume
        totals = {
            "volume_low": volume.low_total,
            "volume_high": volume.high_total,
            "missing_period": volume.missing_total,
        }
        off = self.rules.disable
        for check in VOLUME_CHECKS:
            out[ALL, check] = 0 if check in off else totals[check]
        return out

    def snapshot(self, now: float | None = None) -> QualitySnapshot:
        """The current facts, after closing every slice that ended by ``now`` (the clock by default)."""
        now = self._clock() if now is None else now
        counts = self.counts(now)
        volume = self._volume
        return QualitySnapshot(
            taken_at=now,
            profile_version=None if self._profile is None else self._profile.version,
            records_total=self._records_total,
            violations=MappingProxyType(counts),
            examples=tuple(Example.of(*pending) for pending in reversed(self._examples)),
            volume=volume.state(),
            recent=RecentQuality.of(volume.last),
            freshness=self.freshness(now),
        )
