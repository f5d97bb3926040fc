"""MLflow scoring server (``POST /invocations``).

Requests (MLflow 2; ``params`` is ignored)::

    {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]], "index"?: [0, 1]}}
    {"dataframe_records": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}
    {"instances": [...]}                     TensorFlow Serving row format
    {"inputs": {"a": [1, 3], "b": [2, 4]}}   TensorFlow Serving columnar format
    Content-Type: text/csv                   a header line, then one row per line

MLflow 1's bare ``{"columns", "data"}`` (pandas split) and bare list of records
are read too. Responses are ``{"predictions": [...]}`` (MLflow 2) or a bare
list (MLflow 1); a DataFrame output arrives as a list of objects, one per row.

A ``dataframe_split`` row must have one value per entry of ``columns``, as
pandas requires when MLflow builds the DataFrame (a scalar row is a row of one
value). A row longer or shorter than ``columns`` is a :class:`PayloadError`
(the worker's ``parse_error``), never a record: which value belongs to which
column is unknown, so pairing them would feed drift wrong features.

CSV cells are typed as pandas would read the simple cases: an empty cell is
None, an integer or decimal literal a number, anything else a string.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from sidecar.protocols.base import AdapterOptions, Inputs, Outputs, PayloadError
from sidecar.protocols.bodies import Body
from sidecar.protocols.kserve import instance_rows
from sidecar.protocols.rows import batch_of, features_of
from sidecar.protocols.tfserving import columnar_rows

__all__ = ["read_request", "read_response", "CSV_TYPES"]

CSV_TYPES = ("text/csv", "application/csv")

# Deliberately narrower than float(): "nan", "1_000" and " 1 " stay strings.
_INT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def read_request(request: Body, options: AdapterOptions) -> Inputs:
    if request.media_type in CSV_TYPES:
        return Inputs(_csv_rows(request.text))
    document = request.json()
    if isinstance(document, list):
        return Inputs([features_of(record, options) for record in document])
    if not isinstance(document, dict):
        raise PayloadError("expected a JSON object or a text/csv body")
    if "dataframe_split" in document:
        return Inputs(_split_rows(document["dataframe_split"], options))
    if "dataframe_records" in document:
        records = document["dataframe_records"]
        if not isinstance(records, list):
            raise PayloadError("'dataframe_records' must be a list")
        return Inputs([features_of(record, options) for record in records])
    if "instances" in document:
        return Inputs(instance_rows(document["instances"], options))
    if "inputs" in document:
        return Inputs(columnar_rows(document["inputs"], options))
    if "columns" in document and "data" in document:
        return Inputs(_split_rows(document, options))
    raise PayloadError("expected 'dataframe_split', 'dataframe_records', 'instances' or 'inputs'")


def read_response(response: Body, options: AdapterOptions, batched: bool) -> Outputs:
    document = response.json()
    if isinstance(document, dict) and "predictions" in document:
        return Outputs(batch_of(document["predictions"]))
    if isinstance(document, list):
        return Outputs(document)
    raise PayloadError("expected {'predictions': ...} or a list")


def _split_rows(split: Any, options: AdapterOptions) -> list[dict[str, Any]]:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise PayloadError("'dataframe_split' must be an object with a 'data' list")
    columns = split.get("columns")
    if columns is None:
        return [features_of(row, options) for row in split["data"]]
    if not isinstance(columns, list):
        raise PayloadError("'dataframe_split.columns' must be a list")
    names = [str(column) for column in columns]
    width = len(names)
    rows = []
    for i, row in enumerate(split["data"]):
        cells = row if isinstance(row, list) else [row]
        if len(cells) != width:
            raise PayloadError(f"'dataframe_split.data' row {i} has length {len(cells)}, 'columns' has {width}")
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def _csv_rows(text: str) -> list[dict[str, Any]]:
    try:
        lines = [line for line in csv.reader(io.StringIO(text)) if line]
    except csv.Error as exc:
        raise PayloadError(f"body is not CSV: {exc}") from None
    if not lines:
        return []
    header = lines[0]
    return [dict(zip(header, map(_cell, line), strict=False)) for line in lines[1:]]


def _cell(text: str) -> Any:
    if text == "":
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text
