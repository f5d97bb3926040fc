"""Adapter details the fixtures do not show: errors, pairing, CSV typing, pointer failures."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.protocols import AdapterOptions, PayloadError, parse_exchange
from sidecar.records import Exchange


def _exchange(request: Any, response: Any = None, *, status: int = 200, path: str = "/x") -> Exchange:
    def raw(body: Any) -> bytes:
        return body if isinstance(body, bytes) else (b"" if body is None else orjson.dumps(body))

    return Exchange("rid", 0.0, "POST", path, [], raw(request), status, [], raw(response), 0.01, "main", "random", 1.0)


def _csv(text: str, response: Any = None) -> Exchange:
    return _exchange(text.encode(), response)._replace(request_headers=[(b"content-type", b"text/csv")])


KSERVE = AdapterOptions(protocol="kserve-v1")
TF = AdapterOptions(protocol="tfserving")
MLFLOW = AdapterOptions(protocol="mlflow")


@pytest.mark.parametrize(
    ("options", "request_body", "response_body", "message"),
    [
        (KSERVE, {"inputs": [[1]]}, None, "'instances'"),
        (KSERVE, [[1]], None, "'instances'"),
        (KSERVE, {"instances": "abc"}, None, "must be a list"),
        (KSERVE, {"instances": [[1]]}, {"outputs": [1]}, "'predictions'"),
        (KSERVE, {"instances": [[1]]}, b"<html>oops</html>", "not JSON"),
        (TF, {"examples": []}, None, "'instances' or 'inputs'"),
        (TF, {"instances": [1]}, {"result": 1}, "'predictions' or 'outputs'"),
        (MLFLOW, {"foo": []}, None, "expected 'dataframe_split'"),
        (MLFLOW, 3, None, "JSON object or a text/csv"),
        (MLFLOW, {"dataframe_split": [[1]]}, None, "'data' list"),
        (MLFLOW, {"dataframe_split": {"columns": "a", "data": [[1]]}}, None, "columns"),
        (MLFLOW, {"dataframe_records": {"a": 1}}, None, "must be a list"),
        (MLFLOW, {"instances": [1]}, {"result": [1]}, "'predictions'"),
    ],
)
def test_wrong_shapes_are_payload_errors(
    options: AdapterOptions, request_body: Any, response_body: Any, message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_exchange(_exchange(request_body, response_body), options)


def test_surplus_predictions_are_dropped() -> None:
    parsed = parse_exchange(_exchange({"instances": [[1]]}, {"predictions": ["a", "b", "c"]}), KSERVE)
    assert [(row.features, row.prediction) for row in parsed.rows] == [({"f0": 1}, "a")]


@pytest.mark.parametrize("status", [199, 302, 400, 404, 503])
def test_non_2xx_response_is_not_read(status: int) -> None:
    parsed = parse_exchange(_exchange({"instances": [[1]]}, b"<html>error</html>", status=status), KSERVE)
    assert [row.prediction for row in parsed.rows] == [None]


def test_empty_2xx_response_leaves_predictions_empty() -> None:
    parsed = parse_exchange(_exchange({"instances": [[1], [2]]}, b""), KSERVE)
    assert [row.prediction for row in parsed.rows] == [None, None]


def test_configured_names_run_out_into_positions() -> None:
    options = AdapterOptions(protocol="kserve-v1", feature_names=("a", "b"))
    assert parse_exchange(_exchange({"instances": [[1, 2, 3]]}), options).rows[0].features == {"a": 1, "b": 2, "f2": 3}


def test_b64_only_instance_is_one_positional_value() -> None:
    parsed = parse_exchange(_exchange({"instances": [{"b64": "AAEC"}]}), TF)
    assert parsed.rows[0].features == {"f0": "AAEC"}


def test_columnar_input_without_batch_dimension_is_repeated() -> None:
    parsed = parse_exchange(_exchange({"inputs": {"x": [1, 2], "lang": "en"}}), TF)
    assert [row.features for row in parsed.rows] == [{"x": 1, "lang": "en"}, {"x": 2, "lang": "en"}]


def test_columnar_scalars_are_one_row() -> None:
    assert parse_exchange(_exchange({"inputs": {"x": 1, "y": "a"}}), TF).rows[0].features == {"x": 1, "y": "a"}


def test_mlflow_split_without_columns_is_positional() -> None:
    options = AdapterOptions(protocol="mlflow", feature_names=("a",))
    parsed = parse_exchange(_exchange({"dataframe_split": {"data": [[1, 2]]}}), options)
    assert parsed.rows[0].features == {"a": 1, "f1": 2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([[1, 2], [1]], "row 1 has length 1, 'columns' has 2"),
        ([[1, 2, 3]], "row 0 has length 3, 'columns' has 2"),
        ([7], "row 0 has length 1, 'columns' has 2"),
        ([[]], "row 0 has length 0, 'columns' has 2"),
    ],
)
def test_mlflow_split_row_of_another_width_than_columns_is_a_payload_error(data: list[Any], message: str) -> None:
    for document in ({"dataframe_split": {"columns": ["a", "b"], "data": data}}, {"columns": ["a", "b"], "data": data}):
        with pytest.raises(PayloadError, match=message):
            parse_exchange(_exchange(document, {"predictions": [0] * len(data)}), MLFLOW)


def test_mlflow_split_rows_of_the_width_of_columns_are_records() -> None:
    split = {"columns": ["a", "b"], "data": [[1, None], [3, "x"]]}
    rows = parse_exchange(_exchange({"dataframe_split": split}), MLFLOW).rows
    assert [row.features for row in rows] == [{"a": 1, "b": None}, {"a": 3, "b": "x"}]
    single = parse_exchange(_exchange({"dataframe_split": {"columns": ["a"], "data": [7, [8]]}}), MLFLOW).rows
    assert [row.features for row in single] == [{"a": 7}, {"a": 8}]


def test_mlflow_1_shapes() -> None:
    split = parse_exchange(_exchange({"columns": ["a"], "data": [[1], [2]]}), MLFLOW)
    assert [row.features for row in split.rows] == [{"a": 1}, {"a": 2}]
    records = parse_exchange(_exchange([{"a": 1}, {"a": 2}], [0, 1]), MLFLOW)
    assert [(row.features, row.prediction) for row in records.rows] == [({"a": 1}, 0), ({"a": 2}, 1)]


def test_mlflow_columnar_predictions() -> None:
    response = {"predictions": {"label": ["x", "y"], "probability": [0.9, 0.2]}}
    rows = parse_exchange(_exchange({"instances": [[1], [2]]}, response), MLFLOW).rows
    assert [(row.prediction, row.confidence) for row in rows] == [("x", 0.9), ("y", 0.2)]


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("12", 12),
        ("-3", -3),
        ("+4", 4),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("", None),
        ("nan", "nan"),
        ("1_000", "1_000"),
        (" 1", " 1"),
        ("12345678901234567890", 1.2345678901234567e19),
        ("abc", "abc"),
    ],
)
def test_csv_cells(cell: str, value: Any) -> None:
    assert parse_exchange(_csv(f"x,y\n{cell},1\n"), MLFLOW).rows[0].features == {"x": value, "y": 1}


def test_csv_short_and_blank_lines() -> None:
    rows = parse_exchange(_csv("a,b,c\n\n1,2\n3,4,5,6\n"), MLFLOW).rows
    assert [row.features for row in rows] == [{"a": 1, "b": 2}, {"a": 3, "b": 4, "c": 5}]


def test_csv_header_only_has_no_rows() -> None:
    assert parse_exchange(_csv("a,b\n"), MLFLOW).rows == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (AdapterOptions(protocol="json", features_pointer="/missing"), "features pointer '/missing'"),
        (AdapterOptions(protocol="json", predictions_pointer="/nope"), "predictions pointer '/nope'"),
        (AdapterOptions(protocol="json", scores_pointer="/rows/5"), "scores pointer '/rows/5'"),
    ],
)
def test_unresolved_pointers_are_payload_errors(options: AdapterOptions, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_exchange(_exchange({"rows": [1, 2]}, {"rows": [0.1, 0.9]}), options)


def test_json_without_pointers_reads_whole_bodies() -> None:
    parsed = parse_exchange(_exchange([{"a": 1}, {"a": 2}], ["x", "y"]), AdapterOptions(protocol="json"))
    assert [(row.features, row.prediction) for row in parsed.rows] == [({"a": 1}, "x"), ({"a": 2}, "y")]


def test_json_scores_and_predictions_of_different_lengths() -> None:
    options = AdapterOptions(protocol="json", predictions_pointer="/p", scores_pointer="/s")
    parsed = parse_exchange(_exchange([[1], [2]], {"p": ["a", "b"], "s": [0.9]}), options)
    assert [(row.prediction, row.confidence) for row in parsed.rows] == [("a", 0.9), ("b", None)]


def test_json_single_row_scalar_request() -> None:
    parsed = parse_exchange(_exchange(42, {"y": 0.25}), AdapterOptions(protocol="json", predictions_pointer="/y"))
    assert [(row.features, row.prediction, row.confidence) for row in parsed.rows] == [({"f0": 42}, 0, 0.75)]


def test_request_id_comes_from_oip_id_only_when_a_string() -> None:
    request = {"id": "", "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]}
    options = AdapterOptions(protocol="open-inference-v2")
    assert parse_exchange(_exchange(request), options).request_id is None


def test_a_regression_models_outputs_in_0_1_are_values_not_probabilities() -> None:
    exchange = _exchange({"instances": [[1.0], [2.0]]}, {"predictions": [0.25, [0.75]]}, path="/v1/models/m:predict")
    classifier = parse_exchange(exchange, AdapterOptions(protocol="kserve-v1"))
    assert [(row.prediction, row.confidence) for row in classifier.rows] == [(0, 0.75), (1, 0.75)]
    regression = parse_exchange(exchange, AdapterOptions(protocol="kserve-v1", regression=True))
    assert [(row.prediction, row.confidence, row.scores) for row in regression.rows] == [
        (0.25, None, None),
        (0.75, None, None),
    ]
