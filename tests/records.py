"""One builder of PredictionRecords for tests: each suite passes only the fields it cares about."""

from __future__ import annotations

from typing import Any

from sidecar.records import PredictionRecord

_DEFAULTS: dict[str, Any] = {
    "timestamp": 0.0,
    "request_id": "r",
    "row": 0,
    "model_name": "model",
    "model_version": None,
    "variant": "primary",
    "prediction": None,
    "confidence": None,
    "scores": None,
    "latency_ms": 1.0,
    "status_code": 200,
    "strategy": "random",
    "probability": 1.0,
}


def make_record(**fields: Any) -> PredictionRecord:
    """A record with neutral defaults (no features, no prediction, p = 1), overridden by ``fields``."""
    return PredictionRecord(**{**_DEFAULTS, "features": {}, **fields})
