"""The ``json`` protocol: any JSON, with the parts found by JSON Pointers.

Three pointers (RFC 6901), each optional:

- ``features_pointer`` (``SIDECAR_FEATURES_POINTER``) into the request; the
  whole request when unset. An array there is a batch, one row per element; any
  other value is a single row.
- ``predictions_pointer`` (``SIDECAR_PREDICTIONS_POINTER``) into the response;
  the whole response when neither response pointer is set.
- ``scores_pointer`` (``SIDECAR_SCORES_POINTER``) into the response: per-row
  probabilities or scores that go with the predictions.

For a batch, the predictions (and scores) are per-row arrays, or columnar
objects; for a single row they are that row's output whole. Each row's output is
read by :mod:`~sidecar.protocols.predictions` as the object
``{"prediction": p, "scores": s}``, so a label with a probability vector, or a
label with one score, gives the label and its confidence.

Example: ``SIDECAR_FEATURES_POINTER=/data/rows``, ``SIDECAR_PREDICTIONS_POINTER=/result/labels``
and ``SIDECAR_SCORES_POINTER=/result/probabilities`` read::

    {"data": {"rows": [{"age": 39}, {"age": 51}]}}
    → {"result": {"labels": ["no", "yes"], "probabilities": [[0.8, 0.2], [0.3, 0.7]]}}

A pointer that does not resolve is a ``PayloadError``: the configuration and
the traffic disagree, and the parse-error count is where that should show.
"""

from __future__ import annotations

from typing import Any

from sidecar.protocols.base import AdapterOptions, Inputs, Outputs, PayloadError
from sidecar.protocols.bodies import Body
from sidecar.protocols.rows import batch_of, features_of
from sidecar.syntax.jsonpointer import parse_pointer, resolve

__all__ = ["read_request", "read_response"]


def read_request(request: Body, options: AdapterOptions) -> Inputs:
    target = _find(request.json(), options.features_pointer or "", "features")
    if isinstance(target, list):
        return Inputs([features_of(item, options) for item in target])
    return Inputs([features_of(target, options)], batched=False)


def read_response(response: Body, options: AdapterOptions, batched: bool) -> Outputs:
    document = response.json()
    parts: dict[str, Any] = {}
    if options.predictions_pointer is not None or options.scores_pointer is None:
        parts["prediction"] = _find(document, options.predictions_pointer or "", "predictions")
    if options.scores_pointer is not None:
        parts["scores"] = _find(document, options.scores_pointer, "scores")
    if not batched:
        return Outputs([parts])
    columns = {key: batch_of(value) for key, value in parts.items()}
    size = max(len(column) for column in columns.values())
    return Outputs([{key: column[i] for key, column in columns.items() if i < len(column)} for i in range(size)])


def _find(document: Any, pointer: str, what: str) -> Any:
    try:
        return resolve(document, parse_pointer(pointer))
    except LookupError as exc:
        raise PayloadError(f"the {what} pointer {pointer!r} does not resolve: {exc}") from None
