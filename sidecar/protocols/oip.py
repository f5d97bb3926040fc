"""Open Inference Protocol (KServe V2), JSON and the binary-data extension.

``POST /v2/models/<name>[/versions/<version>]/infer``::

    request   {"id": "42", "parameters"?: {...},
               "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                           "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}]}
    response  {"model_name": "iris", "model_version": "3", "id": "42",
               "outputs": [{"name": "predict_proba", "shape": [2, 3], "datatype": "FP32",
                            "data": [0.1, 0.2, 0.7, 0.8, 0.1, 0.1]}]}

``data`` may be nested or flat; either way it is read row-major by ``shape``,
whose first dimension is the batch, always. Row ``i`` of a tensor is its
``i``-th slice, and a slice of one element is that element (shape ``[N, 1]``).

Features: a request with one input tensor whose rows are flat vectors has
positional features (columns of a matrix); otherwise each input is one feature
under its own name, holding its row slice (``[N]``/``[N, 1]`` tensors give
scalars, as in MLServer's pandas codec).

Outputs: one output tensor gives each row its slice; several give each row an
object ``{output name: slice}``, read by the object rule of
:mod:`~sidecar.protocols.predictions` (so ``predict`` and ``predict_proba``
together give a label and a confidence).

Binary-data extension: with ``Inference-Header-Content-Length`` only the JSON
part is read. A tensor whose data travels in the binary part has no ``data``
(and a ``binary_data_size`` parameter); it still counts towards the batch
size through its shape, but contributes no feature or output.

All tensors of a message must agree on the batch size; a message where they do
not is a ``PayloadError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sidecar.protocols.base import AdapterOptions, Inputs, Outputs, PayloadError, member
from sidecar.protocols.bodies import Body
from sidecar.protocols.rows import features_of

__all__ = ["read_request", "read_response"]


@dataclass(slots=True)
class _Tensor:
    name: str
    batch: int
    rows: list[Any] | None  # None when the data is in the binary part


def read_request(request: Body, options: AdapterOptions) -> Inputs:
    document = request.json()
    tensors = _tensors(member(document, "inputs", "a request object"), "inputs", len(request.data))
    single = len(tensors) == 1
    rows: list[dict[str, Any]] = []
    for i in range(_batch(tensors, "inputs")):
        if single and tensors[0].rows is not None and _is_flat_vector(tensors[0].rows[i]):
            rows.append(features_of(tensors[0].rows[i], options))
        else:
            rows.append({t.name: t.rows[i] for t in tensors if t.rows is not None})
    return Inputs(rows, request_id=_text(document, "id"))


def read_response(response: Body, options: AdapterOptions, batched: bool) -> Outputs:
    document = response.json()
    tensors = _tensors(member(document, "outputs", "a response object"), "outputs", len(response.data))
    size = _batch(tensors, "outputs")
    values: list[Any]
    if len(tensors) == 1:
        values = tensors[0].rows or [None] * size
    else:
        values = [{t.name: t.rows[i] for t in tensors if t.rows is not None} for i in range(size)]
    return Outputs(values, model_version=_text(document, "model_version"), request_id=_text(document, "id"))


def _text(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a version sent as a number is still that version
    return None


def _is_flat_vector(row: Any) -> bool:
    return isinstance(row, list) and len(row) > 1 and not any(isinstance(x, list | dict) for x in row)


def _batch(tensors: list[_Tensor], what: str) -> int:
    sizes = {t.batch for t in tensors}
    if len(sizes) > 1:
        raise PayloadError(f"the tensors in {what!r} disagree on the batch size: {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def _tensors(items: Any, what: str, body_size: int) -> list[_Tensor]:
    if not isinstance(items, list):
        raise PayloadError(f"{what!r} must be a list of tensors")
    return [_tensor(item, what, body_size) for item in items]


def _tensor(item: Any, what: str, body_size: int) -> _Tensor:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise PayloadError(f"every tensor in {what!r} must be an object with a string 'name'")
    name: str = item["name"]
    shape = item.get("shape")
    data = item.get("data")
    if shape is None:
        # Not valid OIP, but the rows are still plain to see in nested data.
        if data is None:
            raise PayloadError(f"tensor {name!r} has neither 'shape' nor 'data'")
        rows = data if isinstance(data, list) else [data]
        return _Tensor(name, len(rows), [_one(row) for row in rows])
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise PayloadError(f"tensor {name!r} has shape {shape!r}; expected a list of non-negative integers")
    batch = shape[0] if shape else 1
    # A shape is only a claim: without data (binary part) or with empty rows it
    # could declare billions of rows, so no more rows than body bytes.
    if batch > max(body_size, 1):
        raise PayloadError(f"tensor {name!r} declares {batch} rows, more than its body can hold")
    if data is None:
        return _Tensor(name, batch, None)
    flat = _flatten(data)
    if len(flat) != math.prod(shape):
        raise PayloadError(f"tensor {name!r} has {len(flat)} values, which do not fill shape {shape}")
    dims = shape[1:]
    width = math.prod(dims)
    return _Tensor(name, batch, [_one(_nest(flat[i * width : (i + 1) * width], dims)) for i in range(batch)])


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    # Iterative, so the depth of a hostile body cannot exhaust the stack.
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _nest(flat: list[Any], dims: list[int]) -> Any:
    """Row-major ``flat`` in the shape ``dims`` (a scalar when ``dims`` is empty)."""
    if not dims:
        return flat[0]
    if len(dims) == 1 or not flat:
        return flat
    step = len(flat) // dims[0]
    return [_nest(flat[j * step : (j + 1) * step], dims[1:]) for j in range(dims[0])]


def _one(row: Any) -> Any:
    return row[0] if isinstance(row, list) and len(row) == 1 else row
