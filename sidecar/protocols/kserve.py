"""KServe V1 protocol (the TensorFlow Serving row format).

``POST /v1/models/<name>:predict``::

    request   {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
              {"instances": [{"age": 39, "income": 52000.0}, ...]}
    response  {"predictions": [1, 0]}
              {"predictions": [[0.1, 0.9], [0.8, 0.2]]}

Each instance is one row: an object gives named features, a list positional
ones, a scalar a single positional feature. Each prediction is read by
:mod:`sidecar.protocols.predictions`.
"""

from __future__ import annotations

from typing import Any

from sidecar.protocols.base import AdapterOptions, Inputs, Outputs, PayloadError, member
from sidecar.protocols.bodies import Body
from sidecar.protocols.rows import batch_of, features_of

__all__ = ["read_request", "read_response", "instance_rows"]


def instance_rows(instances: Any, options: AdapterOptions) -> list[dict[str, Any]]:
    """The rows of an ``instances`` list."""
    if not isinstance(instances, list):
        raise PayloadError(f"'instances' must be a list, not {type(instances).__name__}")
    return [features_of(instance, options) for instance in instances]


def read_request(request: Body, options: AdapterOptions) -> Inputs:
    return Inputs(instance_rows(member(request.json(), "instances", "a request object"), options))


def read_response(response: Body, options: AdapterOptions, batched: bool) -> Outputs:
    return Outputs(batch_of(member(response.json(), "predictions", "a response object")))
