"""Protocol adapters: what a captured request/response pair says, row by row.

``SIDECAR_PROTOCOL`` picks the adapter:

============================  ==========================================================
``kserve-v1``                 ``{"instances": [...]}`` → ``{"predictions": [...]}``
``open-inference-v2``         KServe V2 / OIP tensors, JSON and binary-data extension
``tfserving``                 TensorFlow Serving row (``instances``) and columnar (``inputs``)
``mlflow``                    ``/invocations``: dataframe split/records, instances, inputs, CSV
``json``                      any JSON, read by configured JSON Pointers
``auto`` (default)            chosen per exchange by path, then body shape (:mod:`.routes`)
============================  ==========================================================

Usage::

    from sidecar.protocols import AdapterOptions, PayloadError, parse_exchange

    options = AdapterOptions(protocol="auto", feature_names=("age", "income"))
    try:
        parsed = parse_exchange(exchange, options)
    except PayloadError:
        ...  # count parse_error, keep going

The rules for predictions and confidence are in :mod:`.predictions`, for
feature names and row pairing in :mod:`.rows`, for bodies (gzip, NaN, the
binary-data extension) in :mod:`.bodies`. The protocol names and JSON
Pointers, which the settings validate without loading the adapters, are in
:mod:`sidecar.syntax.protocols` and :mod:`sidecar.syntax.jsonpointer`.
"""

from __future__ import annotations

from sidecar.protocols.base import AdapterOptions, PayloadError, PayloadTooLarge
from sidecar.protocols.exchange import parse_exchange, response_confidence
from sidecar.syntax.jsonpointer import parse_pointer
from sidecar.syntax.protocols import PROTOCOLS, Protocol

__all__ = [
    "AdapterOptions",
    "PayloadError",
    "PayloadTooLarge",
    "PROTOCOLS",
    "Protocol",
    "parse_exchange",
    "parse_pointer",
    "response_confidence",
]
