"""The parse path's fast paths give the general paths' answers, value for value.

Several steps of ``parse_exchange`` test for the exact types parsed JSON holds
(``list``, ``dict``, ``float``, ``int``) and then take a shorter road of C-level
builtins; anything else (a subclass, a bool, an object) takes the general road.
These tests feed the same values down both roads (a ``float`` subclass, for
instance, is equal to its value but fails the exact-type test), or compare a
fast path with a plain loop that states its rule, over the edge values where
they could part: NaN in each position, ±inf, -0.0, ties, bools, ints mixed with
floats, sums at the tolerance, mixed-case keys.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from sidecar.protocols import AdapterOptions, PayloadError, parse_exchange
from sidecar.protocols.bodies import Body, loads
from sidecar.protocols.kserve import instance_rows
from sidecar.protocols.predictions import SUM_TOLERANCE, Outcome, _argmax, _is_probability, interpret
from sidecar.protocols.routes import detect_request, path_version, route_request
from sidecar.protocols.rows import features_of, pair
from sidecar.records import Exchange, Row

NAN, INF = math.nan, math.inf


class Real(float):
    """A float that fails ``type(x) is float``: it sends a value down the general path."""


class Whole(int):
    """An int that fails ``type(x) is int``."""


class Items(list[Any]):
    """A list that fails ``type(x) is list``."""


class Members(dict[str, Any]):
    """A dict that fails ``type(x) is dict``."""


def _general(value: Any) -> Any:
    """The same value, every container and number of it a subclass, so no exact-type test passes."""
    if type(value) is float:
        return Real(value)
    if type(value) is int:
        return Whole(value)
    if type(value) is list:
        return Items(_general(item) for item in value)
    if type(value) is dict:
        return Members({key: _general(item) for key, item in value.items()})
    return value


def _same(left: Any, right: Any) -> bool:
    """Equality that counts NaN equal to NaN and tells int from float, list from dict."""
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or (left == right and type(left) is type(right))
    if isinstance(left, float) or isinstance(right, float):
        return False
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return list(left) == list(right) and all(_same(left[k], right[k]) for k in left)
    return bool(left == right) and isinstance(left, bool) == isinstance(right, bool)


def _plain(outcome: Outcome) -> tuple[Any, Any, Any]:
    # The general path keeps a subclass where it returns the input (several labels); compare values, not types.
    def strip(value: Any) -> Any:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, float):
            return float(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, list):
            return [strip(item) for item in value]
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items()}
        return value

    return strip(outcome.prediction), strip(outcome.confidence), strip(outcome.scores)


OUTPUTS: list[Any] = [
    # Lists of numbers: probabilities, logits, labels, with every edge value in front, middle and back.
    [0.1, 0.7, 0.2],
    [0.97, 0.02, 0.01],
    [0.5, 0.5],
    [0.0, 1.0],
    [-0.0, 0.0, 1.0],
    [1.0, -0.0],
    [0, 1],
    [1, 0, 0],
    [0.33, 0.33, 0.33],
    [0.49, 0.49],
    [0.51, 0.51],
    [0.5, 0.5 + SUM_TOLERANCE],
    [0.5, 0.5 + 2 * SUM_TOLERANCE],
    [0.9, 0.8],
    [-1.0, 2.5, 0.3],
    [NAN, 0.5, 0.5],
    [0.5, NAN, 0.5],
    [0.5, 0.5, NAN],
    [NAN, 2.0, 3.0],
    [2.0, NAN, 3.0],
    [NAN, NAN],
    [INF, 0.0],
    [0.0, INF],
    [-INF, 1.0, 1.0],
    [NAN, INF],
    [INF, NAN],
    [-0.5, 1.5],
    [3.0, 3.0, 1.0],
    [1, 2.5],
    [2, 5],
    [1, 1],
    [True, 0.5],
    [False, True],
    [0.4, True],
    [1e300, 1e300],
    [1e308, 1e308, INF],  # the finite check must come before the sum, which would overflow
    [1e308, 1e308],  # finite, but their sum overflows: not probabilities, and no OverflowError
    # Top-k label/score lists and other lists.
    [{"label": "a", "score": 0.25}, {"label": "b", "score": 0.75}],
    [{"label": "a", "score": NAN}, {"label": "b", "score": 0.75}],
    [{"LABEL": "a", "Score": 3}, {"label": "b", "score": 4}],
    [[0.1, 0.9], [0.8, 0.2]],
    ["a", "b"],
    [0.8],
    [[0.3]],
    [],
    # Objects: a label with its scores, in every case and order of keys.
    {"label": "setosa", "scores": [0.97, 0.02, 0.01]},
    {"scores": [0.97, 0.02, 0.01], "label": "setosa"},
    {"Label": "cat", "SCORES": [0.2, 0.8]},
    {"Label": "first", "label": "second", "score": 0.6},
    {"class": "c", "label": "l", "probabilities": [0.3, 0.7]},
    {"label": ["one"], "scores": [0.4, 0.6]},
    {"label": "x", "scores": [0.9]},
    {"label": "x", "scores": [NAN, 0.5]},
    {"label": "x", "score": True},
    {"label": "x", "score": 2},
    {"label": None, "scores": [0.1, 0.9]},
    {"probabilities": [0.2, 0.8], "classes": ["no", "yes"]},
    {"probabilities": [0.2, 0.8], "classes": ["a", "b", "c"]},
    {"probabilities": [2.0, 8.0], "classes": ["no", "yes"]},
    {"probability": 0.8, "classes": ["no", "yes"]},
    {"classes": ["1"], "score": 0.7},
    {"classes": ["1"], "scores": [0.3, 0.7]},
    {"logits": [1.0, NAN], "Probs": [0.5, 0.5], "probabilities": [0.1, 0.9]},
    {"prediction": 0.7},
    {"prediction": [2, 3]},
    {"cat": 0.1, "dog": 0.9},
    {"out_label": "b", "out_probs": [0.3, 0.7]},
    {"lo": 2.5, "hi": 7.5},
    {},
    # Numbers and labels.
    0.7,
    0.5,
    1.5,
    NAN,
    -INF,
    3,
    True,
    "cat",
    None,
]


@pytest.mark.parametrize("regression", [False, True])
@pytest.mark.parametrize("value", OUTPUTS, ids=repr)
def test_interpret_fast_and_general_paths_agree(value: Any, regression: bool) -> None:
    fast = interpret(value, regression=regression)
    general = interpret(_general(value), regression=regression)
    assert all(_same(a, b) for a, b in zip(_plain(fast), _plain(general), strict=True)), (fast, general)


def test_interpret_reads_the_common_shapes_as_the_rules_say() -> None:
    # The shapes the fast paths are for, pinned by value (the agreement test above only compares paths).
    assert interpret({"label": "setosa", "scores": [0.97, 0.02, 0.01]}) == Outcome("setosa", 0.97, [0.97, 0.02, 0.01])
    assert interpret([0.1, 0.7, 0.2]) == Outcome(1, 0.7, [0.1, 0.7, 0.2])
    assert interpret([0, 1]) == Outcome(1, 1.0, [0.0, 1.0])
    assert interpret([2, 5]) == Outcome([2, 5])
    assert interpret([1, 2.5]) == Outcome(1, None, [1.0, 2.5])
    assert interpret(0.8) == Outcome(1, 0.8, [0.19999999999999996, 0.8])
    assert interpret(1.5) == Outcome(1.5)
    assert interpret(True) == Outcome(True)
    assert interpret({"Label": "first", "label": "second", "score": 0.6}) == Outcome("first", 0.6, [0.6])
    assert interpret({"class": "c", "label": "l", "probabilities": [0.3, 0.7]}).prediction == "l"


def test_scores_never_alias_the_parsed_list() -> None:
    values = [0.2, 0.8]
    outcome = interpret(values)
    assert outcome.scores == values
    assert outcome.scores is not values


def _reference_is_probability(vector: list[float]) -> bool:
    """The rule as a plain loop: two or more, each finite and non-negative, summing to 1 ± SUM_TOLERANCE."""
    if len(vector) < 2:
        return False
    if not all(0.0 <= x < math.inf for x in vector):
        return False
    try:
        return abs(math.fsum(vector) - 1.0) <= SUM_TOLERANCE
    except OverflowError:  # finite values whose sum is not: far from 1
        return False


def _reference_argmax(vector: list[float]) -> int | None:
    """The rule as a plain loop: NaN never wins; the first of equal maxima does."""
    best: int | None = None
    for i, x in enumerate(vector):
        if x == x and (best is None or x > vector[best]):
            best = i
    return best


def _vectors() -> list[list[float]]:
    rng = random.Random(15)
    pool = [NAN, INF, -INF, -0.0, 0.0, 0.25, 0.5, 0.75, 1.0, -1.0, 2.0, 0.01, 0.49, 0.51]
    vectors = [[rng.choice(pool) for _ in range(rng.randint(0, 5))] for _ in range(3000)]
    edges = [
        [0.5, 0.5 + SUM_TOLERANCE],
        [0.5, 0.5 - SUM_TOLERANCE],
        [1e308, 1e308, INF],
        [1e308, 1e308],
        [1.0],
        [NAN],
        [],
    ]
    return vectors + edges


def test_probability_test_and_argmax_match_their_rules() -> None:
    for vector in _vectors():
        assert _is_probability(vector) == _reference_is_probability(vector), vector
        assert _argmax(vector) == _reference_argmax(vector), vector


def test_the_list_fast_path_matches_the_rules_on_random_vectors() -> None:
    for vector in _vectors():
        if len(vector) < 2:
            continue
        fast = interpret(vector)
        general = interpret(Items(Real(x) for x in vector))
        assert all(_same(a, b) for a, b in zip(_plain(fast), _plain(general), strict=True)), vector


OPTIONS = AdapterOptions(feature_names=("sepal_length", "sepal_width"))

INSTANCES: list[list[Any]] = [
    [[5.1, 3.5, 1.4, 0.2]],
    [[5.1, 3.5, 1.4, 0.2], [6.0, 3.4, 4.5, 1.6]],
    [[1, 2], [1, 2, 3], [4], [], [5, 6]],
    [[1.0, {"b64": "aGk="}], [2.0, 3.0]],
    [[{"b64": 1}], [{"b64": "x", "y": 1}]],
    [{"age": 39, "image": {"b64": "aGk="}}, [1, 2]],
    [3.5, "text", None, True],
    [Items([1.0, 2.0]), [True, None, "a"]],
    [[[1, 2], [3, 4]]],
    [],
]


@pytest.mark.parametrize("instances", INSTANCES, ids=repr)
def test_instance_rows_match_features_of(instances: list[Any]) -> None:
    assert instance_rows(instances, OPTIONS) == [features_of(instance, OPTIONS) for instance in instances]


def test_instance_rows_names_positions_past_the_configured_names() -> None:
    assert instance_rows([[1, 2, 3]], OPTIONS) == [{"sepal_length": 1, "sepal_width": 2, "f2": 3}]


def test_instance_rows_still_reject_a_non_list() -> None:
    with pytest.raises(PayloadError, match="'instances' must be a list, not dict"):
        instance_rows({"a": 1}, OPTIONS)


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        (None, [None, None, None]),
        ([], [None, None, None]),
        ([1], [1, None, None]),
        ([1, 2, 3], [1, 2, 3]),
        ([1, 2, 3, 4, 5], [1, 2, 3]),
    ],
)
def test_pair_gives_each_row_its_output_and_drops_the_surplus(outputs: list[Any] | None, expected: list[Any]) -> None:
    features = [{"a": 1}, {"a": 2}, {"a": 3}]
    rows = pair(features, outputs)
    assert [row.prediction for row in rows] == expected
    assert [row.features for row in rows] == features


def test_pair_passes_regression_on() -> None:
    assert pair([{"a": 1}], [0.7], regression=True) == [Row({"a": 1}, 0.7)]
    assert pair([{"a": 1}], [0.7]) == [Row({"a": 1}, 1, 0.7, [0.30000000000000004, 0.7])]


BODIES = [
    b'{"instances": [[1, 2]]}',
    b'{"predictions": [1]}',
    b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}',
    b'{"dataframe_split": {"data": []}}',
    b'{"features": [1]}',
    b"[1, 2]",
    b"not json",
]
PATHS = [
    "/v1/models/iris:predict",
    "/v1/models/iris/versions/7:predict",
    "/v2/models/iris/versions/3/infer",
    "/invocations",
    "/predict",
    "/predict?x=/v2/models/m/infer",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("raw", BODIES)
def test_route_request_is_detection_and_the_path_version(path: str, raw: bytes) -> None:
    headers = [(b"content-type", b"application/json")]
    assert route_request(path, Body(headers, raw, 1 << 20)) == (
        detect_request(path, Body(headers, raw, 1 << 20)),
        path_version(path),
    )


def test_route_request_binary_extension_keeps_the_path_version() -> None:
    body = Body([(b"inference-header-content-length", b"2")], b"{}\x00\x01", 1 << 20)
    assert route_request("/v1/models/m/versions/4:predict", body) == ("open-inference-v2", "4")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"null", None),
        (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),
        (b'{"a": NaN}', {"a": NAN}),
        (b"[Infinity, -Infinity]", [INF, -INF]),
    ],
)
def test_body_json_reads_what_loads_reads(raw: bytes, expected: Any) -> None:
    body = Body((), raw, 1 << 20)
    first = body.json()
    assert _same(first, expected)
    assert body.json() is first  # parsed once, null included


@pytest.mark.parametrize("raw", [b"<html>", b'{"a": NaN', b"\xef\xbb\xbf{", b"[1, 2"])
def test_body_json_errors_are_those_of_loads(raw: bytes) -> None:
    with pytest.raises(PayloadError) as expected:
        loads(raw)
    with pytest.raises(PayloadError, match="^body is not JSON: ") as raised:
        Body((), raw, 1 << 20).json()
    assert str(raised.value) == str(expected.value)


def _exchange(path: str, response: bytes, status: int = 200) -> Exchange:
    headers = ((b"content-type", b"application/json"),)
    request = b'{"instances": [[1.0, 2.0]]}'
    return Exchange("r1", 0.0, "POST", path, headers, request, status, headers, response, 0.001, "", "random", 1.0)


@pytest.mark.parametrize("protocol", ["auto", "tfserving", "kserve-v1"])
def test_model_version_comes_from_the_path_under_every_protocol(protocol: str) -> None:
    options = AdapterOptions(protocol=protocol)
    ok = parse_exchange(_exchange("/v1/models/m/versions/9:predict", b'{"predictions": [0.2]}'), options)
    failed = parse_exchange(_exchange("/v1/models/m/versions/9:predict", b"oops", status=500), options)
    empty = parse_exchange(_exchange("/v1/models/m/versions/9:predict", b" "), options)
    assert (ok.model_version, failed.model_version, empty.model_version) == ("9", "9", "9")
    assert ok.rows[0].prediction == 0 and failed.rows[0].prediction is None and empty.rows[0].prediction is None
