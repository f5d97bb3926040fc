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
    rows: list[dict[str, Any]] = []
    width = -1  # no row read yet
    names: tuple[str, ...] = ()
    for instance in instances:
        # features_of's common case inline: a list of plain values, named by position. The rows of a
        # batch have one width, so their names are looked up once.
        if type(instance) is list and dict not in map(type, instance):
            if len(instance) != width:
                width = len(instance)
                names = options.positional_names(width)
            # names has the row's width, so no strict check: zip's keyword alone costs a third of the call.
            rows.append(dict(zip(names, instance)))  # noqa: B905
        else:
            rows.append(features_of(instance, options))
    return rows


def read_request(request: Body, options: AdapterOptions) -> Inputs:
    return Inputs(instance_rows(member(request.json(), "instances", "a request object"), options))


def read_response(response: Body, options: AdapterOptions, batched: bool) -> Outputs:
    return Outputs(batch_of(member(response.json(), "predictions", "a response object")))
