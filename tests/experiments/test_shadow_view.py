"""The ``shadow`` section's JSON and the shadow metrics' samples, rendered from a snapshot: fixed keys, null for NaN."""

from __future__ import annotations

import math

import numpy as np
import orjson

from sidecar.experiments.data import Serving
from sidecar.experiments.definition import experiment_from_mapping
from sidecar.experiments.shadow_analysis import analyse_shadow
from sidecar.experiments.shadow_view import (
    DIFFERENCE_STATS,
    EFFECT_STATS,
    difference_samples,
    effect_samples,
    shadow_json,
)
from sidecar.performance import PerformanceConfig
from sidecar.store import ShadowPairs

T0 = 1_764_144_638.0


def test_a_regressions_section_has_every_key_with_null_where_nothing_was_computed() -> None:
    experiment = experiment_from_mapping(
        {
            "name": "price-v2",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://challenger"}},
            "metrics": {"primary": [{"name": "mae", "source": "label"}]},
            "mde": 1.0,
        }
    )
    pairs = ShadowPairs(
        4, [1.0, 2.0, 3.0], [None] * 3, np.full(3, math.nan), [1.5, 2.0, 2.0], [None] * 3, np.full(3, math.nan),
        [None] * 3, np.zeros(3, dtype=np.bool_),
    )  # fmt: skip
    snapshot = analyse_shadow(
        experiment,
        pairs,
        control=Serving(10, 0.0, 20.0),
        challenger=Serving(0, math.nan, math.nan),
        answers={"stored": 3, "failed": 0, "not_captured": 0, "unreadable": 0},
        config=PerformanceConfig(task="regression", min_labels=10),
        now=T0 + 0.5,
        since=T0,
        min_samples=200,
    )
    body = shadow_json(snapshot)
    assert list(body) == [
        "experiment", "computed_at", "since", "control", "challenger", "alpha", "correction", "pairing", "arms",
        "agreement", "differences", "shift", "metrics", "guardrails",
    ]  # fmt: skip
    assert (body["computed_at"], body["since"]) == ("2025-11-26T08:10:38.500Z", "2025-11-26T08:10:38.000Z")
    assert body["pairing"] == {
        "control_rows": 4,
        "paired": 3,
        "labelled": 0,
        "rate": 0.75,
        "answers": {"stored": 3, "failed": 0, "not_captured": 0, "unreadable": 0},
    }
    assert body["arms"] == [
        {"name": "control", "control": True, "requests": 10, "error_rate": 0.0, "latency_p95_ms": 20.0},
        {"name": "challenger", "control": False, "requests": 0, "error_rate": None, "latency_p95_ms": None},
    ]
    assert body["agreement"] is None  # not a classifier
    assert body["differences"]["of"] == "prediction" and body["differences"]["n"] == 3
    assert body["differences"]["mean"] == (0.5 + 0.0 - 1.0) / 3
    assert body["shift"] == {"psi": None, "verdict": "insufficient_data", "bins": 10, "control": 3, "challenger": 3}
    assert body["metrics"] == [
        {
            "name": "mae", "role": "primary", "kind": "mean", "goal": "decrease", "method": "paired_t", "n": 0,
            "control": None, "challenger": None, "difference": None, "ci_low": None, "ci_high": None,
            "statistic": None, "pvalue": None, "pvalue_adjusted": None, "discordant": None,
            "verdict": "insufficient_labels",
        }
    ]  # fmt: skip
    assert body["guardrails"] == []
    # JSON through and through: no NaN, no infinity.
    assert orjson.loads(orjson.dumps(body)) == body
    assert [stat for stat, _ in difference_samples(snapshot)] == list(DIFFERENCE_STATS)
    assert [key for key, _ in effect_samples(snapshot)] == [("mae", stat) for stat in EFFECT_STATS]
    assert all(math.isnan(value) for _, value in effect_samples(snapshot))
