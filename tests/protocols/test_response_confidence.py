"""``response_confidence``: the lowest confidence in a response, read from the response alone."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest

from sidecar.protocols import AdapterOptions, response_confidence

AUTO = AdapterOptions()


def _oip(*outputs: dict[str, Any]) -> dict[str, Any]:
    return {"model_name": "m", "outputs": list(outputs)}


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/models/m:predict", {"predictions": [[0.1, 0.9], [0.4, 0.6]]}, 0.6),
        ("/v1/models/m:predict", {"predictions": [0.95, 0.2]}, 0.8),
        ("/v1/models/m:predict", {"predictions": [1, 0]}, None),
        ("/v1/models/m:predict", {"outputs": {"probabilities": [[0.3, 0.7]]}}, 0.7),
        ("/invocations", [[0.5, 0.5], [0.9, 0.1]], 0.5),
        ("/invocations", {"predictions": [{"label": "a", "score": 0.55}]}, 0.55),
        (
            "/v2/models/m/infer",
            _oip({"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [0.2, 0.8, 0.9, 0.1]}),
            0.8,
        ),
        ("/anything", _oip({"name": "p", "shape": [1, 2], "datatype": "FP32", "data": [0.35, 0.65]}), 0.65),
        ("/anything", {"predictions": [[0.25, 0.75]]}, 0.75),
        ("/anything", {"result": 0.9}, None),
        ("/v1/models/m:predict", {"predictions": [[-2.0, 3.0]]}, None),
        ("/v1/models/m:predict", {"predictions": []}, None),
    ],
)
def test_lowest_confidence(path: str, body: Any, expected: float | None) -> None:
    confidence = response_confidence(orjson.dumps(body), path=path, options=AUTO)
    assert confidence == (None if expected is None else pytest.approx(expected))


def test_explicit_protocol_ignores_the_path() -> None:
    body = orjson.dumps({"predictions": [[0.3, 0.7]]})
    assert response_confidence(body, path="/whatever", options=AdapterOptions(protocol="kserve-v1")) == 0.7


def test_gzip_and_tensorflow_tokens() -> None:
    body = gzip.compress(b'{"predictions": [[NaN, 1.0], [0.2, 0.8]]}')
    headers = [(b"content-encoding", b"gzip")]
    assert response_confidence(body, headers=headers, path="/v1/models/m:predict", options=AUTO) == 0.8


def test_json_protocol_uses_the_pointers() -> None:
    options = AdapterOptions(protocol="json", predictions_pointer="/labels", scores_pointer="/probs")
    body = orjson.dumps({"labels": ["a", "b"], "probs": [[0.9, 0.1], [0.35, 0.65]]})
    assert response_confidence(body, options=options) == 0.65


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"", []),
        (b"<html>", []),
        (b'{"predictions": [0.9', []),
        (b"[" * 3000 + b"]" * 3000, []),
        (b"\x1f\x8b garbage", [(b"content-encoding", b"gzip")]),
        (gzip.compress(b"[" + b"0.5," * 100_000 + b"0.5]"), [(b"content-encoding", b"gzip")]),
    ],
)
def test_never_raises(body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    options = AdapterOptions(max_bytes=10_000)
    assert response_confidence(body, headers=headers, path="/invocations", options=options) is None
