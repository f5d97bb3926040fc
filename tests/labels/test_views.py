"""The body of GET /api/v1/performance, pinned from a snapshot built by hand: the view only renders it."""

from __future__ import annotations

import math

import orjson
import pytest

from sidecar.labels.snapshot import DELAY_BUCKETS, DelayHistogram, LabelsSnapshot
from sidecar.labels.views import bound_key, delay_json, performance_json
from sidecar.performance import MetricResult, PerformanceSnapshot
from sidecar.store import Coverage

T = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_delay_buckets_are_cumulative_with_keys_in_whole_seconds() -> None:
    per_bucket = [0] * (len(DELAY_BUCKETS) + 1)
    per_bucket[DELAY_BUCKETS.index(1.0)] = 2
    per_bucket[DELAY_BUCKETS.index(3600.0)] = 1
    per_bucket[DELAY_BUCKETS.index(14 * 86_400.0)] = 3
    per_bucket[-1] = 1  # later than 90 days
    body = delay_json(DelayHistogram.of(per_bucket, sum_seconds=12_000_000.5))
    assert body == {
        "count": 7,
        "sum": 12_000_000.5,
        "buckets": {
            "1": 2,
            "10": 2,
            "60": 2,
            "300": 2,
            "900": 2,
            "3600": 3,
            "21600": 3,
            "86400": 3,
            "259200": 3,
            "604800": 3,
            "1209600": 6,
            "2592000": 6,
            "7776000": 6,
            "+Inf": 7,
        },
    }
    # Machine-readable as well: every key parses back to its bound, in order.
    assert [float(key) for key in body["buckets"]] == [*DELAY_BUCKETS, math.inf]


def test_an_empty_histogram_has_every_bucket_at_zero() -> None:
    body = delay_json(DelayHistogram())
    assert body["count"] == 0 and body["sum"] == 0.0
    assert set(body["buckets"].values()) == {0} and len(body["buckets"]) == len(DELAY_BUCKETS) + 1


@pytest.mark.parametrize(
    ("bound", "key"),
    [(1.0, "1"), (1_209_600.0, "1209600"), (0.5, "0.5"), (1e-05, "0.00001"), (2.5e7, "25000000"), (math.inf, "+Inf")],
)
def test_bound_keys_have_no_exponent_and_parse_back(bound: float, key: str) -> None:
    assert bound_key(bound) == key
    assert float(key) == bound


def test_a_histogram_with_the_wrong_number_of_buckets_is_refused() -> None:
    with pytest.raises(ValueError, match="cumulative counts"):
        DelayHistogram((1, 2, 3), 0.0)


def test_the_body_shows_the_snapshot_and_nothing_else() -> None:
    accuracy = MetricResult("accuracy", 0.75, 4, 4.0, "ok")
    on_labelled = MetricResult("estimated_accuracy", 0.8, 4, 4.0, "ok")
    f1 = MetricResult("f1", None, 4, 4.0, "unavailable", reason="one class only", excluded=1)
    estimated = MetricResult("estimated_accuracy", 0.7, 10, 12.5, "ok")
    snapshot = LabelsSnapshot(
        T,
        "iris",
        "classification",
        86_400.0,
        2,
        performance=(PerformanceSnapshot("iris", "primary", "classification", 10, 4, (accuracy, on_labelled, f1)),),
        estimated={"primary": estimated},
        coverage=Coverage(predictions=10, labelled=4),
        loaded=True,
        outcomes={"joined": 4, "unmatched": 1, "duplicate": 0, "invalid": 2},
        delay=DelayHistogram.of([1, 3] + [0] * (len(DELAY_BUCKETS) - 1), sum_seconds=25.0),
        retraining={"trained_at": None, "new_labels": 4, "last_trigger": None},
    )
    body = performance_json(snapshot)
    assert body == {
        "evaluated_at": "2027-01-15T08:00:00.000Z",
        "task": "classification",
        "window_seconds": 86_400.0,
        "min_labels": 2,
        "loaded_from_store": True,
        "leader": None,
        "variants": [
            {
                "model": "iris",
                "variant": "primary",
                "labelled": 4,
                "metrics": {
                    "accuracy": {"value": 0.75, "status": "ok", "samples": 4, "weighted_samples": 4.0},
                    "f1": {
                        "value": None,
                        "status": "unavailable",
                        "samples": 4,
                        "weighted_samples": 4.0,
                        "reason": "one class only",
                        "excluded": 1,
                    },
                    "estimated_accuracy": {"value": 0.7, "status": "ok", "samples": 10, "weighted_samples": 12.5},
                },
                "estimated_accuracy_on_labelled": {"value": 0.8, "status": "ok", "samples": 4, "weighted_samples": 4.0},
            }
        ],
        "estimated_accuracy": {"primary": {"value": 0.7, "status": "ok", "samples": 10, "weighted_samples": 12.5}},
        "label_coverage": {"predictions": 10, "labelled": 4, "share": 0.4},
        "labels": {"joined": 4, "unmatched": 1, "duplicate": 0, "invalid": 2},
        "label_delay_seconds": {
            "count": 4,
            "sum": 25.0,
            "buckets": {key: 1 if key == "1" else 4 for key in [*map(bound_key, DELAY_BUCKETS), "+Inf"]},
        },
        "retraining": {"trained_at": None, "new_labels": 4, "last_trigger": None},
    }
    assert orjson.loads(orjson.dumps(body)) == body  # what the admin app sends


def test_before_the_first_evaluation_the_body_is_empty_not_missing() -> None:
    body = performance_json(LabelsSnapshot(T, "iris", "regression", 3600.0, 50))
    assert body["variants"] == [] and body["estimated_accuracy"] == {}
    assert body["label_coverage"] is None
    assert body["labels"] == {"joined": 0, "unmatched": 0, "duplicate": 0, "invalid": 0}
    assert body["label_delay_seconds"]["count"] == 0 and body["label_delay_seconds"]["buckets"]["+Inf"] == 0
