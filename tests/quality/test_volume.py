"""Volume per slice against a configured or learned rate, and missing periods, on a fake clock."""

from __future__ import annotations

import time

import pytest

from sidecar.quality import QualityMonitor, VolumeState
from sidecar.quality.volume import VolumeTracker
from tests.quality.builders import CLEAN, FakeClock, profile, record

SLICE = 10.0


def traffic(monitor: QualityMonitor, clock: FakeClock, slice_start: float, n: int, *, probability: float = 1.0) -> None:
    """``n`` records in the slice that starts at ``slice_start``."""
    clock.now = slice_start + 1.0
    monitor.observe([record(timestamp=clock.now, probability=probability) for _ in range(n)])


def volume(monitor: QualityMonitor, now: float) -> VolumeState:
    return monitor.snapshot(now).volume


def test_configured_rate_judges_each_closed_slice() -> None:
    clock = FakeClock(1005.0)  # mid-slice: the slice [1000, 1010) is partial
    m = QualityMonitor(None, expected_rate=1.0, slice_seconds=SLICE, clock=clock)
    traffic(m, clock, 1000.0, 1)  # partial start slice: never judged
    state = volume(m, 1010.0)
    assert (state.verdict, state.low_total, state.missing_periods_total) == ("unknown", 0, 0)
    assert state.expected_source == "configured" and state.expected_per_second == 1.0

    traffic(m, clock, 1010.0, 10)
    assert volume(m, 1015.0).current_records == 10
    state = volume(m, 1020.0)
    assert (state.verdict, state.actual_per_second, state.current_records) == ("ok", 1.0, 0)

    traffic(m, clock, 1020.0, 4)  # < 50% of 10
    assert volume(m, 1030.0).verdict == "low"
    traffic(m, clock, 1030.0, 5)  # exactly 50%: not low
    assert volume(m, 1040.0).verdict == "ok"
    traffic(m, clock, 1040.0, 21)  # > 200%
    assert volume(m, 1050.0).verdict == "high"
    traffic(m, clock, 1050.0, 20)  # exactly 200%: not high
    state = volume(m, 1060.0)
    assert (state.verdict, state.low_total, state.high_total) == ("ok", 1, 1)
    counts = m.counts(1060.0)
    assert (counts["__all__", "volume_low"], counts["__all__", "volume_high"]) == (1, 1)


def test_volume_is_weighted_so_sampling_does_not_look_like_a_drop() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(None, expected_rate=1.0, slice_seconds=SLICE, clock=clock)
    traffic(m, clock, 1010.0, 1, probability=0.1)  # one record standing for ten rows
    state = volume(m, 1020.0)
    assert (state.verdict, state.actual_per_second) == ("ok", 1.0)


def test_empty_slices_are_missing_periods_with_a_current_run() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(None, expected_rate=1.0, slice_seconds=SLICE, clock=clock)
    traffic(m, clock, 1010.0, 10)
    state = volume(m, 1050.0)  # 1010 closed with traffic; 1020, 1030, 1040 closed empty
    assert (state.missing_periods_total, state.missing_run, state.verdict, state.low_total) == (3, 3, "low", 3)
    assert m.snapshot(1050.0).recent.records == 0
    traffic(m, clock, 1050.0, 10)
    state = volume(m, 1060.0)
    assert (state.missing_periods_total, state.missing_run, state.verdict) == (3, 0, "ok")
    state = volume(m, 1070.0)  # nothing arrived in [1060, 1070)
    assert (state.missing_periods_total, state.missing_run) == (4, 1)
    assert m.counts(1070.0)["__all__", "missing_period"] == 4


def test_missing_periods_count_before_there_is_any_expectation() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(None, expected_rate=None, slice_seconds=SLICE, clock=clock)
    state = volume(m, 1030.0)  # [1000, 1010) is the start slice; 1010 and 1020 are empty
    assert (state.missing_periods_total, state.missing_run, state.verdict, state.low_total) == (2, 2, "unknown", 0)


def test_learned_rate_needs_five_slices_then_judges_against_their_mean() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(None, expected_rate=None, slice_seconds=SLICE, clock=clock)
    for i, n in enumerate([10, 20, 10, 20]):
        traffic(m, clock, 1010.0 + SLICE * i, n)
        state = volume(m, 1020.0 + SLICE * i)
        assert (state.verdict, state.expected_per_second) == ("unknown", None)
    traffic(m, clock, 1050.0, 15)
    state = volume(m, 1060.0)
    assert state.verdict == "unknown"  # judged before it was learned
    assert state.expected_source == "learned" and state.expected_per_second == pytest.approx(1.5)  # mean 15/slice
    traffic(m, clock, 1060.0, 7)  # < 7.5
    assert volume(m, 1070.0).verdict == "low"
    traffic(m, clock, 1070.0, 31)  # > 30 against the updated expectation
    state = volume(m, 1080.0)
    assert state.verdict == "high"
    assert (state.low_total, state.high_total) == (1, 1)


def test_learned_rate_follows_a_lasting_change_but_not_an_outage() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(None, slice_seconds=SLICE, clock=clock)
    start = 1010.0
    for i in range(10):
        traffic(m, clock, start + SLICE * i, 10)
    learned = volume(m, start + SLICE * 10).expected_per_second
    assert learned == pytest.approx(1.0)
    # An outage of 50 slices is not learned: the expectation stays.
    state = volume(m, start + SLICE * 60)
    assert state.expected_per_second == pytest.approx(1.0) and state.missing_run == 50 and state.verdict == "low"
    # Traffic that doubles for good is judged high at first, then becomes the normal.
    verdicts = []
    for i in range(60, 100):
        traffic(m, clock, start + SLICE * i, 25)
        verdicts.append(volume(m, start + SLICE * (i + 1)).verdict)
    assert verdicts[0] == "high" and verdicts[-1] == "ok"
    assert volume(m, start + SLICE * 100).expected_per_second == pytest.approx(2.5, rel=0.05)


def test_a_long_gap_costs_no_more_than_a_short_one() -> None:
    tracker = VolumeTracker(slice_seconds=1.0, expected_rate=1.0, start=0.0)
    began = time.perf_counter()
    tracker.advance(1e9)
    assert time.perf_counter() - began < 0.01
    assert tracker.missing_total == 1e9 - 1


def test_a_clock_that_steps_back_counts_into_the_open_slice() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(None, expected_rate=1.0, slice_seconds=SLICE, clock=clock)
    traffic(m, clock, 1010.0, 6)
    clock.now = 995.0
    m.observe([record(timestamp=995.0) for _ in range(4)])
    assert volume(m, 995.0).current_records == 10
    state = volume(m, 1020.0)
    assert (state.verdict, state.actual_per_second) == ("ok", 1.0)


def test_recent_quality_is_the_share_of_bad_records_in_the_last_closed_slice() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(profile(), slice_seconds=SLICE, clock=clock)
    assert m.snapshot(1000.0).recent.bad_record_share is None
    clock.now = 1011.0
    bad = {**CLEAN, "age": "x", "country": "XX"}
    m.observe([record(), record(bad), record(), record()])
    recent = m.snapshot(1015.0).recent
    assert recent.records == 0 and recent.slice_start == 1000.0  # the start slice, closed with nothing
    recent = m.snapshot(1020.0).recent
    assert (recent.slice_start, recent.records, recent.bad_records, recent.violations) == (1010.0, 4, 1, 2)
    assert (recent.bad_record_share, recent.violations_per_record) == (0.25, 0.5)
