"""TensorFlow Serving REST predict API, row and columnar formats.

``POST /v1/models/<name>[/versions/<n> | /labels/<label>]:predict``::

    row       {"signature_name"?: "...", "instances": [{"tokens": ["a"], "image": {"b64": "..."}}, ...]}
              → {"predictions": [{"scores": [0.1, 0.9], "classes": ["no", "yes"]}, ...]}
    columnar  {"inputs": {"tokens": [["a"], ["b"]], "length": [1, 1]}}   or   {"inputs": [[1.0, 2.0], ...]}
              → {"outputs": {"scores": [[0.1, 0.9], ...]}}   or   {"outputs": [[0.1, 0.9], ...]}

The row format is KServe V1's. In the columnar format every named input is
batch-major, so row ``i`` takes element ``i`` of each; a list ``inputs`` is a
single unnamed input, read like ``instances``. TensorFlow Serving writes
``NaN``/``Infinity`` for non-finite floats, which :mod:`~sidecar.protocols.bodies`
accepts, and ``{"b64": "..."}`` for binary strings, kept as their base64 text.
"""

from __future__ import annotations

from typing import Any

from sidecar.protocols.base import AdapterOptions, Inputs, Outputs, PayloadError
from sidecar.protocols.bodies import Body
from sidecar.protocols.kserve import instance_rows
from sidecar.protocols.rows import batch_of, columns_to_rows, features_of, unwrap_b64

__all__ = ["read_request", "read_response", "columnar_rows"]


def columnar_rows(inputs: Any, options: AdapterOptions) -> list[dict[str, Any]]:
    """The rows of a columnar ``inputs`` member."""
    if isinstance(inputs, dict):
        return [{name: unwrap_b64(value) for name, value in row.items()} for row in columns_to_rows(inputs)]
    if isinstance(inputs, list):
        return instance_rows(inputs, options)
    return [features_of(inputs, options)]


def read_request(request: Body, options: AdapterOptions) -> Inputs:
    document = request.json()
    if isinstance(document, dict) and "instances" in document:
        return Inputs(instance_rows(document["instances"], options))
    if isinstance(document, dict) and "inputs" in document:
        return Inputs(columnar_rows(document["inputs"], options))
    raise PayloadError("expected a request object with 'instances' or 'inputs'")


def read_response(response: Body, options: AdapterOptions, batched: bool) -> Outputs:
    document = response.json()
    if isinstance(document, dict):
        for key in ("predictions", "outputs"):
            if key in document:
                value = document[key]
                # batch_of's answer for a list, the usual member, without the call.
                return Outputs(value if type(value) is list else batch_of(value))
    raise PayloadError("expected a response object with 'predictions' or 'outputs'")
