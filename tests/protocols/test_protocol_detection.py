"""``auto``: which adapter an exchange gets, and when it gets none."""

from __future__ import annotations

import pytest

from sidecar.protocols import AdapterOptions, PayloadError, parse_exchange
from sidecar.protocols.bodies import Body
from sidecar.protocols.routes import detect_request, detect_response, path_version
from sidecar.records import Exchange

AUTO = AdapterOptions()


def _body(raw: bytes, content_type: str = "application/json") -> Body:
    return Body([(b"content-type", content_type.encode())], raw, max_bytes=1 << 20)


def _exchange(path: str, request: bytes, response: bytes = b"", method: str = "POST") -> Exchange:
    return Exchange("rid", 0.0, method, path, [], request, 200, [], response, 0.01, "main", "random", 1.0)


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v2/models/iris/infer", b"{}", "open-inference-v2"),
        ("/v2/models/iris/versions/3/infer", b"{}", "open-inference-v2"),
        ("/seldon/ns/iris/v2/models/iris/infer", b"{}", "open-inference-v2"),
        ("/v2/models/iris/infer?timeout=1", b"{}", "open-inference-v2"),
        ("/invocations", b"{}", "mlflow"),
        ("/v1/models/iris:predict", b'{"instances": []}', "tfserving"),
        ("/v1/models/iris/versions/2:predict", b'{"inputs": []}', "tfserving"),
        ("/v1/models/iris/labels/canary:predict", b"{}", "tfserving"),
        ("/predict", b"a,b\n1,2\n", None),
        (
            "/predict",
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}',
            "open-inference-v2",
        ),
        ("/predict", b'{"instances": [[1]]}', "tfserving"),
        ("/predict", b'{"dataframe_split": {"data": []}}', "mlflow"),
        ("/predict", b'{"dataframe_records": []}', "mlflow"),
        ("/predict", b'{"inputs": {"a": [1]}}', "tfserving"),
        ("/predict", b'{"inputs": [[1, 2]]}', "tfserving"),
        ("/predict", b'{"features": [1, 2]}', None),
        ("/predict", b"[1, 2]", None),
        ("/predict", b"not json", None),
        ("/v2/models/iris/ready", b"{}", None),
        ("/v1/models/iris:explain", b'{"foo": 1}', None),
        ("/v1/models/iris", b'{"foo": 1}', None),
    ],
)
def test_detect_request(path: str, body: bytes, expected: str | None) -> None:
    assert detect_request(path, _body(body)) == expected


def test_csv_body_means_mlflow() -> None:
    assert detect_request("/predict", _body(b"a,b\n1,2\n", "text/csv")) == "mlflow"


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v2/models/m/infer", b"{}", "open-inference-v2"),
        ("/x", b'{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]}', "open-inference-v2"),
        ("/x", b'{"predictions": [1]}', "tfserving"),
        ("/x", b'{"outputs": [[0.1, 0.9]]}', "tfserving"),
        ("/x", b"[1, 2]", "mlflow"),
        ("/x", b'{"result": 1}', None),
        ("/x", b"1", None),
        ("/x", b"<html>", None),
    ],
)
def test_detect_response(path: str, body: bytes, expected: str | None) -> None:
    assert detect_response(path, _body(body)) == expected


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/v2/models/iris/versions/3/infer", "3"),
        ("/v2/models/iris/infer", None),
        ("/v1/models/iris/versions/12:predict", "12"),
        ("/v1/models/iris/labels/stable:predict", None),
        ("/invocations", None),
        ("/other/versions/3", None),
    ],
)
def test_path_version(path: str, version: str | None) -> None:
    assert path_version(path) == version


@pytest.mark.parametrize("body", [b"", b"   ", b'{"features": [1]}', b"<xml/>", b"\xff\xfe"])
def test_unknown_is_no_rows_not_an_error(body: bytes) -> None:
    assert parse_exchange(_exchange("/predict", body), AUTO).rows == []


@pytest.mark.parametrize("protocol", ["auto", "kserve-v1", "open-inference-v2", "tfserving", "mlflow", "json"])
def test_empty_request_body_has_no_rows_under_every_protocol(protocol: str) -> None:
    exchange = _exchange("/v2/health/ready", b"", method="GET")
    assert parse_exchange(exchange, AdapterOptions(protocol=protocol)).rows == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/models/m/infer", b"not json"),
        ("/v2/models/m/infer", b'{"instances": [[1]]}'),
        ("/v1/models/m:predict", b'{"foo": 1}'),
        ("/v1/models/m:predict", b'{"instances": {"a": 1}}'),
        ("/invocations", b'{"foo": 1}'),
    ],
)
def test_known_path_with_the_wrong_body_is_a_payload_error(path: str, body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_exchange(_exchange(path, body), AUTO)
