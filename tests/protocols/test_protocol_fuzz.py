"""Fuzz: whatever the bodies, headers and protocol, ``parse_exchange`` raises only ``PayloadError``.

Three generators: raw bytes; JSON built from each protocol's own vocabulary
(tensors that mostly fill their shapes, instances, dataframes), which reaches far
deeper into the adapters than random JSON does; and TensorFlow's NaN tokens.
"""

from __future__ import annotations

import dataclasses
import gzip
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.protocols import PROTOCOLS, AdapterOptions, PayloadError, parse_exchange, response_confidence
from sidecar.records import Exchange, Row

PATHS = st.sampled_from(
    ["/", "/predict", "/invocations", "/v1/models/m:predict", "/v1/models/m/versions/2:predict", "/v2/models/m/infer"]
)
CONTENT_TYPES = st.sampled_from(
    ["", "application/json", "text/csv", "text/csv; charset=latin-1", "application/octet-stream"]
)
ENCODINGS = st.sampled_from(["", "gzip", "deflate", "br", "gzip, gzip", "identity"])
KEYS = st.sampled_from(
    [
        "instances", "inputs", "outputs", "predictions", "dataframe_split", "dataframe_records", "columns",
        "data", "name", "shape", "datatype", "parameters", "binary_data_size", "id", "model_version", "b64",
        "label", "score", "probabilities", "classes", "scores", "prediction", "x", "rows",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=0.0, max_value=1.0),  # probabilities, so the confidence rules run
    st.text(max_size=8),
)
SHAPES = st.lists(st.integers(min_value=0, max_value=4), max_size=3)
ROWS = st.lists(st.lists(SCALARS, max_size=4) | st.dictionaries(KEYS, SCALARS, max_size=3) | SCALARS, max_size=4)


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    """A tensor whose data fills its shape most of the time, flat or nested."""
    shape = draw(SHAPES)
    size = 1
    for dim in shape:
        size *= dim
    tensor: dict[str, Any] = {"name": draw(st.sampled_from(["x", "y", "predict", "predict_proba", "label"]))}
    tensor["shape"] = draw(st.just(shape) | SHAPES)
    tensor["datatype"] = draw(st.sampled_from(["FP32", "INT64", "BYTES", "BOOL"]))
    data = draw(st.lists(SCALARS, min_size=size, max_size=size))
    if len(shape) > 1 and shape[0] and draw(st.booleans()):
        width = size // shape[0]
        data = [data[i * width : (i + 1) * width] for i in range(shape[0])]
    if draw(st.integers(0, 4)):
        tensor["data"] = data
    else:
        tensor["parameters"] = {"binary_data_size": draw(st.integers(0, 64))}
    return tensor


TENSORS = st.lists(tensors(), max_size=3)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)
OUTPUTS = st.one_of(
    st.fixed_dictionaries({"predictions": ROWS | ANY_JSON}),
    st.fixed_dictionaries({"outputs": TENSORS}, optional={"model_version": st.text(max_size=3)}),
    st.fixed_dictionaries({"outputs": st.dictionaries(KEYS, st.lists(ANY_JSON, max_size=3), max_size=3)}),
    ROWS,
    ANY_JSON,
)
# (protocol, request) pairs: each protocol's request shapes, and anything at all.
REQUESTS = st.one_of(
    st.tuples(st.just("kserve-v1"), st.fixed_dictionaries({"instances": ROWS})),
    st.tuples(
        st.just("open-inference-v2"), st.fixed_dictionaries({"inputs": TENSORS}, optional={"id": st.text(max_size=3)})
    ),
    st.tuples(
        st.just("tfserving"),
        st.fixed_dictionaries({"inputs": st.dictionaries(KEYS, SCALARS | st.lists(SCALARS, max_size=3), max_size=3)}),
    ),
    st.tuples(
        st.just("mlflow"),
        st.fixed_dictionaries(
            {"dataframe_split": st.fixed_dictionaries({"columns": st.lists(KEYS, max_size=3), "data": ROWS})}
        )
        | st.fixed_dictionaries({"dataframe_records": ROWS}),
    ),
    st.tuples(st.just("json"), ANY_JSON),
)
OPTIONS = st.builds(
    AdapterOptions,
    protocol=st.sampled_from(PROTOCOLS),
    feature_names=st.lists(st.text(max_size=3), max_size=3).map(tuple),
    features_pointer=st.sampled_from([None, "", "/x", "/rows", "/instances", "/instances/0", "/data"]),
    predictions_pointer=st.sampled_from([None, "", "/predictions", "/outputs/0/data"]),
    scores_pointer=st.sampled_from([None, "/scores", "/probabilities"]),
    max_bytes=st.integers(min_value=1, max_value=1 << 8) | st.just(1 << 20),
)
HONEST = st.sampled_from(["", "", "gzip"])  # encodings that match the body, so adapters get to read it


def _encode(body: bytes, encoding: str) -> bytes:
    # Mostly encode honestly, so the adapters see the decoded body.
    return gzip.compress(body) if encoding == "gzip" else body


def _headers(content_type: str, encoding: str, binary_length: int | None) -> list[tuple[bytes, bytes]]:
    headers = []
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    if encoding:
        headers.append((b"content-encoding", encoding.encode()))
    if binary_length is not None:
        headers.append((b"inference-header-content-length", str(binary_length).encode()))
    return headers


def _exchange(draw: st.DrawFn, request: bytes, response: bytes, *, honest: bool = False) -> Exchange:
    encoding = draw(HONEST if honest else ENCODINGS)
    binary = draw(st.none() | st.integers(min_value=0, max_value=len(request) + 2)) if not honest else None
    return Exchange(
        request_id="rid",
        timestamp=0.0,
        method=draw(st.sampled_from(["POST", "GET"])),
        path=draw(PATHS),
        request_headers=_headers(draw(CONTENT_TYPES), encoding, binary),
        request_body=_encode(request, encoding),
        status_code=draw(st.sampled_from([200, 201, 400, 500])),
        response_headers=_headers("application/json", "" if honest else draw(ENCODINGS), None),
        response_body=response,
        latency_seconds=0.0,
        variant="main",
        strategy="random",
        probability=1.0,
    )


@st.composite
def raw_exchanges(draw: st.DrawFn) -> Exchange:
    return _exchange(draw, draw(st.binary(max_size=200)), draw(st.binary(max_size=200)))


@st.composite
def json_exchanges(draw: st.DrawFn) -> tuple[Exchange, AdapterOptions]:
    protocol, request = draw(REQUESTS)
    exchange = _exchange(draw, orjson.dumps(request), orjson.dumps(draw(OUTPUTS)), honest=draw(st.booleans()))
    options = draw(OPTIONS)
    # Mostly read with the matching adapter or auto, so the adapters get past the first check.
    chosen = draw(st.sampled_from([protocol, protocol, "auto", options.protocol]))
    return exchange, dataclasses.replace(options, protocol=chosen)


def _check(exchange: Exchange, options: AdapterOptions) -> None:
    try:
        parsed = parse_exchange(exchange, options)
    except PayloadError:
        pass
    else:
        assert all(isinstance(row, Row) and isinstance(row.features, dict) for row in parsed.rows)
        for row in parsed.rows:
            assert row.confidence is None or 0.0 <= row.confidence <= 1.0
            # What an adapter returns must be loggable as JSON.
            orjson.dumps([row.features, row.prediction, row.scores], option=orjson.OPT_NON_STR_KEYS)
    confidence = response_confidence(
        exchange.response_body, headers=exchange.response_headers, path=exchange.path, options=options
    )
    assert confidence is None or 0.0 <= confidence <= 1.0


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(raw_exchanges(), OPTIONS)
def test_arbitrary_bytes_raise_only_payload_error(exchange: Exchange, options: AdapterOptions) -> None:
    _check(exchange, options)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(json_exchanges())
def test_protocol_shaped_json_raises_only_payload_error(case: tuple[Exchange, AdapterOptions]) -> None:
    _check(*case)


@settings(max_examples=200)
@given(st.lists(st.one_of(ANY_JSON, st.sampled_from(["NaN", "Infinity", "-Infinity"])), max_size=6))
def test_tensorflow_tokens_raise_only_payload_error(items: list[Any]) -> None:
    # Splice bare NaN/Infinity tokens into JSON text, as TensorFlow Serving writes them.
    text = (
        "["
        + ", ".join(item if item in ("NaN", "Infinity", "-Infinity") else orjson.dumps(item).decode() for item in items)
        + "]"
    )
    body = ('{"instances": ' + text + "}").encode()
    response = ('{"predictions": ' + text + "}").encode()
    exchange = Exchange("rid", 0.0, "POST", "/v1/models/m:predict", [], body, 200, [], response, 0.0, "m", "r", 1.0)
    _check(exchange, AdapterOptions())
