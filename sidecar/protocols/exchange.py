"""The entry points: a captured exchange in, rows out.

:func:`parse_exchange` runs in the capture worker, off the request path. It
raises nothing but :class:`PayloadError`; everything else it does is documented
in the adapter modules and in :mod:`~sidecar.protocols.predictions`.

- An empty request body (a GET, a health probe) has no rows.
- The response is read only when the status is 2xx: an error body carries no
  predictions, and its rows keep their features with ``prediction`` None. An
  empty 2xx response body leaves the predictions None too.
- The model version comes from the response (OIP ``model_version``), else from
  the path (``/versions/<v>``). The request id is OIP's ``id``, from the request,
  else from the response.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from sidecar.protocols import generic, kserve, mlflow, oip, tfserving
from sidecar.protocols.base import AdapterOptions, Inputs, Outputs, PayloadError
from sidecar.protocols.bodies import Body
from sidecar.protocols.predictions import interpret
from sidecar.protocols.routes import detect_response, path_version, route_request
from sidecar.protocols.rows import pair
from sidecar.records import Exchange, Parsed

__all__ = ["parse_exchange", "response_confidence"]


class _Adapter(NamedTuple):
    read_request: Callable[[Body, AdapterOptions], Inputs]
    # The flag is Inputs.batched: whether the request was a batch or one row.
    read_response: Callable[[Body, AdapterOptions, bool], Outputs]


# A plain mapping, as uvicorn maps names to implementations: nothing registers itself.
_ADAPTERS: dict[str, _Adapter] = {
    "kserve-v1": _Adapter(kserve.read_request, kserve.read_response),
    "open-inference-v2": _Adapter(oip.read_request, oip.read_response),
    "tfserving": _Adapter(tfserving.read_request, tfserving.read_response),
    "mlflow": _Adapter(mlflow.read_request, mlflow.read_response),
    "json": _Adapter(generic.read_request, generic.read_response),
}


def parse_exchange(exchange: Exchange, options: AdapterOptions) -> Parsed:
    """Read one exchange into one :class:`~sidecar.records.Row` per row of its batch.

    Raises :class:`PayloadError` (``PayloadTooLarge`` for a decoded body past
    ``options.max_bytes``) when a body cannot be read as its protocol.

    Usage::

        parsed = parse_exchange(exchange, AdapterOptions(protocol="open-inference-v2"))
        for i, row in enumerate(parsed.rows): ...
    """
    # One function rather than a wrapper around a second: this runs once per captured exchange.
    try:
        max_bytes = options.max_bytes
        request = Body(exchange.request_headers, exchange.request_body, max_bytes)
        if request.empty:
            return Parsed([])
        protocol = options.protocol
        if protocol == "auto":
            # Detection looks the path up anyway: take the path's version from the same look.
            detected, version = route_request(exchange.path, request)
            if detected is None:
                return Parsed([])
            protocol = detected
        else:
            version = path_version(exchange.path)
        adapter = _ADAPTERS[protocol]
        inputs = adapter.read_request(request, options)
        if 200 <= exchange.status_code < 300:
            response = Body(exchange.response_headers, exchange.response_body, max_bytes)
            if not response.empty:
                outputs = adapter.read_response(response, options, inputs.batched)
                return Parsed(
                    pair(inputs.rows, outputs.values, regression=options.regression),
                    outputs.model_version or version,
                    inputs.request_id or outputs.request_id,
                )
        return Parsed(pair(inputs.rows, None), version, inputs.request_id)
    except RecursionError:
        # Bodies are bounded in size, not in depth; a deep one is not worth reading.
        raise PayloadError("body is nested too deeply") from None


def response_confidence(
    body: bytes,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    path: str = "",
    options: AdapterOptions,
) -> float | None:
    """The lowest confidence over the rows of a response, for importance sampling.

    Reads the response alone, so it is cheaper than :func:`parse_exchange`, and
    never raises: a body it cannot read, or one without probabilities, gives
    None. Pass the response headers (for ``Content-Encoding`` and the OIP
    binary-data extension) and the request path (for ``auto``). Call it for 2xx
    responses only. Under the ``json`` protocol an array at the predictions
    pointer is taken as one entry per row, since the request is not consulted.
    """
    try:
        response = Body(headers, body, options.max_bytes)
        if response.empty:
            return None
        protocol = options.protocol
        if protocol == "auto":
            detected = detect_response(path, response)
            if detected is None:
                return None
            protocol = detected
        outputs = _ADAPTERS[protocol].read_response(response, options, True)
        confidences = [c for value in outputs.values if (c := interpret(value).confidence) is not None]
    except (PayloadError, RecursionError):
        return None
    return min(confidences, default=None)
