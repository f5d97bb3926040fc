"""Open Inference Protocol details: the binary-data extension, shapes, and malformed tensors."""

from __future__ import annotations

import gzip
import struct
from typing import Any

import orjson
import pytest

from sidecar.protocols import AdapterOptions, PayloadError, parse_exchange
from sidecar.records import Exchange

OIP = AdapterOptions(protocol="open-inference-v2")


def _exchange(
    request: bytes,
    response: bytes = b"",
    *,
    request_headers: list[tuple[bytes, bytes]] | None = None,
    response_headers: list[tuple[bytes, bytes]] | None = None,
) -> Exchange:
    return Exchange(
        "rid", 0.0, "POST", "/v2/models/m/infer", request_headers or [], request, 200,
        response_headers or [], response, 0.01, "main", "random", 1.0,
    )  # fmt: skip


def _tensor(name: str, shape: list[int], data: Any = None, **parameters: Any) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": name, "shape": shape, "datatype": "FP32"}
    if data is not None:
        tensor["data"] = data
    if parameters:
        tensor["parameters"] = parameters
    return tensor


def _binary(document: dict[str, Any], tail: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    head = orjson.dumps(document)
    return head + tail, [(b"inference-header-content-length", str(len(head)).encode())]


def test_binary_extension_captures_json_described_inputs_only() -> None:
    image = struct.pack("<6f", *range(6))
    request, headers = _binary(
        {"inputs": [_tensor("image", [2, 3], binary_data_size=len(image)), _tensor("age", [2, 1], [31, 64])]},
        image,
    )
    probs = struct.pack("<4f", 0.1, 0.9, 0.6, 0.4)
    response, response_headers = _binary(
        {"model_name": "m", "outputs": [_tensor("probs", [2, 2], binary_data_size=len(probs))]}, probs
    )
    parsed = parse_exchange(
        _exchange(request, response, request_headers=headers, response_headers=response_headers), OIP
    )
    assert [row.features for row in parsed.rows] == [{"age": 31}, {"age": 64}]
    assert [row.prediction for row in parsed.rows] == [None, None]


def test_binary_extension_is_detected_by_auto_on_any_path() -> None:
    request, headers = _binary({"inputs": [_tensor("x", [1, 2], [1.0, 2.0])]}, b"\x00" * 8)
    exchange = _exchange(request, request_headers=headers)._replace(path="/predict")
    assert parse_exchange(exchange, AdapterOptions()).rows[0].features == {"f0": 1.0, "f1": 2.0}


def test_binary_extension_after_gzip() -> None:
    request, headers = _binary({"inputs": [_tensor("x", [1], [7])]}, b"\x01\x02")
    headers.append((b"content-encoding", b"gzip"))
    parsed = parse_exchange(_exchange(gzip.compress(request), request_headers=headers), OIP)
    assert parsed.rows[0].features == {"x": 7}


def test_mixed_binary_and_json_outputs() -> None:
    request = orjson.dumps({"inputs": [_tensor("x", [2], [1, 2])]})
    response, headers = _binary(
        {"outputs": [_tensor("label", [2], ["a", "b"]), _tensor("embedding", [2, 4], binary_data_size=32)]},
        b"\x00" * 32,
    )
    parsed = parse_exchange(_exchange(request, response, response_headers=headers), OIP)
    assert [row.prediction for row in parsed.rows] == ["a", "b"]


def test_scalar_tensor_is_one_row() -> None:
    parsed = parse_exchange(_exchange(orjson.dumps({"inputs": [_tensor("threshold", [], 0.5)]})), OIP)
    assert [row.features for row in parsed.rows] == [{"threshold": 0.5}]


def test_three_dimensional_rows_are_kept_whole() -> None:
    data = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    parsed = parse_exchange(_exchange(orjson.dumps({"inputs": [_tensor("img", [2, 2, 2], data)]})), OIP)
    assert [row.features for row in parsed.rows] == [{"img": [[1, 2], [3, 4]]}, {"img": [[5, 6], [7, 8]]}]


def test_several_vector_inputs_are_named_not_positional() -> None:
    request = {"inputs": [_tensor("a", [1, 2], [1, 2]), _tensor("b", [1, 3], [3, 4, 5])]}
    parsed = parse_exchange(_exchange(orjson.dumps(request)), OIP)
    assert parsed.rows[0].features == {"a": [1, 2], "b": [3, 4, 5]}


def test_missing_shape_falls_back_to_the_nesting() -> None:
    request = {"inputs": [{"name": "x", "datatype": "INT64", "data": [[1], [2]]}]}
    assert [row.features for row in parse_exchange(_exchange(orjson.dumps(request)), OIP).rows] == [{"x": 1}, {"x": 2}]


def test_output_row_count_mismatch_pairs_what_it_can() -> None:
    request = orjson.dumps({"inputs": [_tensor("x", [3], [1, 2, 3])]})
    response = orjson.dumps({"outputs": [_tensor("y", [2], ["a", "b"])]})
    assert [row.prediction for row in parse_exchange(_exchange(request, response), OIP).rows] == ["a", "b", None]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"inputs": {"x": [1]}}, "must be a list of tensors"),
        ({"inputs": [{"shape": [1], "data": [1]}]}, "string 'name'"),
        ({"inputs": [_tensor("x", [2, 2], [1, 2, 3])]}, "do not fill shape"),
        ({"inputs": [_tensor("x", [-1], [1])]}, "non-negative integers"),
        ({"inputs": [_tensor("x", [True], [1])]}, "non-negative integers"),
        ({"inputs": [{"name": "x", "shape": "2", "data": [1, 2]}]}, "non-negative integers"),
        ({"inputs": [{"name": "x", "datatype": "FP32"}]}, "neither 'shape' nor 'data'"),
        ({"inputs": [_tensor("x", [2], [1, 2]), _tensor("y", [3], [1, 2, 3])]}, "disagree on the batch size"),
        ({"inputs": [_tensor("x", [10**12, 4], binary_data_size=16)]}, "more than its body can hold"),
        ({"inputs": [_tensor("x", [10**12, 0], [])]}, "more than its body can hold"),
        ({"instances": [[1]]}, "with 'inputs'"),
    ],
)
def test_malformed_requests(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_exchange(_exchange(orjson.dumps(inputs)), OIP)


def test_response_without_outputs_is_an_error() -> None:
    request = orjson.dumps({"inputs": [_tensor("x", [1], [1])]})
    with pytest.raises(PayloadError, match="'outputs'"):
        parse_exchange(_exchange(request, b'{"model_name": "m"}'), OIP)
