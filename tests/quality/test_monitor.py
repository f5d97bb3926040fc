"""The monitor as a whole: freshness, a profile set later, snapshots, and the package's exports."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

import sidecar.quality
from sidecar.quality import QualityMonitor, QualityRules
from tests.quality.builders import CLEAN, FakeClock, fired, profile, record


def test_freshness_is_none_before_the_first_request_and_label() -> None:
    m = QualityMonitor(profile(), clock=FakeClock(1000.0))
    fresh = m.freshness()
    assert (fresh.last_request, fresh.last_label, fresh.request_age_seconds, fresh.label_age_seconds) == (
        None,
        None,
        None,
        None,
    )


def test_freshness_counts_from_the_newest_record_and_label() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(profile(), clock=clock)
    m.observe([record(timestamp=950.0), record(timestamp=970.0), record(timestamp=960.0)])
    m.observe([record(timestamp=940.0)])  # an older batch, late from the queue, does not turn freshness back
    m.observe_label_time(900.0)
    m.observe_label_time(880.0)
    fresh = m.freshness()
    assert (fresh.last_request, fresh.request_age_seconds) == (970.0, 30.0)
    assert (fresh.last_label, fresh.label_age_seconds) == (900.0, 100.0)
    assert m.freshness(now=1070.0).request_age_seconds == 100.0
    # Clocks elsewhere may run ahead of ours: the age is then 0, never negative.
    m.observe_label_time(1010.0)
    assert m.freshness().label_age_seconds == 0.0
    assert m.snapshot().freshness == m.freshness()


def test_without_a_profile_only_volume_freshness_and_rules_work_until_one_is_set() -> None:
    clock = FakeClock(1000.0)
    rules = QualityRules.from_mapping({"features": {"score": {"min": 0, "max": 1}}})
    m = QualityMonitor(None, rules=rules, expected_rate=1.0, slice_seconds=10.0, clock=clock)
    assert set(m.counts()) == {
        *(("score", c) for c in sidecar.quality.FEATURE_CHECKS),
        ("__unexpected__", "unexpected"),
        ("__all__", "volume_low"),
        ("__all__", "volume_high"),
        ("__all__", "missing_period"),
    }
    malformed = {"age": "x", "country": {"a": 1}, "colour": "red", "score": 5}
    m.observe([record(malformed, timestamp=1000.0)])
    assert fired(m) == {("score", "out_of_range"): 1}  # no schema yet, so nothing else is unexpected
    snap = m.snapshot(1000.0)
    assert (snap.profile_version, snap.records_total, snap.freshness.last_request) == (None, 1, 1000.0)
    assert m.profile is None

    m.set_profile(profile("v1"))
    assert m.profile is not None and m.profile.version == "v1"
    assert m.counts()["age", "type"] == 0
    m.observe([record(malformed)])
    assert fired(m) == {
        ("score", "out_of_range"): 2,
        ("age", "type"): 1,
        ("income", "missing"): 1,
        ("country", "type"): 1,
        ("plan", "missing"): 1,
        ("__unexpected__", "unexpected"): 1,
    }
    assert m.snapshot(1000.0).profile_version == "v1"


def test_a_new_profile_keeps_the_counters_already_made() -> None:
    m = QualityMonitor(profile(), clock=FakeClock())
    m.observe([record({**CLEAN, "age": "x"})])
    smaller = dataclasses.replace(profile("v2"), features={"country": profile().features["country"]})
    m.set_profile(smaller)
    m.observe([record({**CLEAN, "age": "x"})])
    counts = m.counts()
    assert counts["age", "type"] == 1  # age is no longer expected: its counter stays, at its last value
    assert counts["__unexpected__", "unexpected"] == 3  # age, income, plan


def test_snapshot_is_immutable_and_serialises() -> None:
    clock = FakeClock(1000.0)
    m = QualityMonitor(profile(), slice_seconds=10.0, clock=clock)
    m.observe([record({**CLEAN, "age": "x", "new": 1}, request_id="r1")])
    snap = m.snapshot(1010.0)
    with pytest.raises(TypeError):
        snap.violations["age", "type"] = 5  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.records_total = 7  # type: ignore[misc]
    m.observe([record({**CLEAN, "age": "y"})])
    assert snap.violations["age", "type"] == 1 and len(snap.examples) == 2
    body = orjson.loads(orjson.dumps(snap.to_json()))
    assert body["profile_version"] == "v1" and body["records_total"] == 1
    assert {"feature": "age", "check": "type", "count": 1} in body["violations"]
    assert {"feature": "__unexpected__", "check": "unexpected", "count": 1} in body["violations"]
    assert body["examples"] == [
        {"timestamp": 1000.0, "request_id": "r1", "feature": "new", "check": "unexpected", "value": "1"},
        {"timestamp": 1000.0, "request_id": "r1", "feature": "age", "check": "type", "value": '"x"'},
    ]
    assert body["volume"]["verdict"] == "unknown" and body["volume"]["expected_per_second"] is None
    assert body["recent"] == {
        "slice_start": 1000.0,
        "records": 1,
        "bad_records": 1,
        "violations": 2,
        "bad_record_share": 1.0,
        "violations_per_record": 2.0,
    }
    assert body["freshness"]["request_age_seconds"] == 10.0


def test_an_empty_batch_changes_nothing() -> None:
    m = QualityMonitor(profile(), clock=FakeClock())
    m.observe([])
    assert m.snapshot().records_total == 0 and m.freshness().last_request is None


def test_exported_members() -> None:
    assert sidecar.quality.__all__ == [
        "ALL",
        "CHECKS",
        "DEFAULT_EXAMPLES",
        "DEFAULT_RANGE_TOLERANCE",
        "DEFAULT_SLICE_SECONDS",
        "FEATURE_CHECKS",
        "HIGH_RATIO",
        "LOW_RATIO",
        "UNEXPECTED",
        "VOLUME_CHECKS",
        "Check",
        "Example",
        "FeatureRule",
        "Freshness",
        "QualityMonitor",
        "QualityRules",
        "QualityRulesError",
        "QualitySnapshot",
        "RecentQuality",
        "Verdict",
        "VolumeState",
        "load_rules",
    ]
    for name in sidecar.quality.__all__:
        assert getattr(sidecar.quality, name) is not None
    assert sidecar.quality.CHECKS == (
        "missing",
        "unexpected",
        "type",
        "null",
        "out_of_range",
        "unseen_category",
        "negative",
        "volume_low",
        "volume_high",
        "missing_period",
    )
