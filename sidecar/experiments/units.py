"""The unit of an experiment: the value of its assignment key, in one text form wherever it is read.

A unit arrives three ways, and the three must agree for an outcome to find
its arm: as a request header's bytes (``header:NAME`` keys, read by
:mod:`.routing`), as a feature of the request's payload (``feature:NAME``
keys), and as the ``unit`` of a posted outcome (:mod:`.outcomes`).
:func:`unit_text` is the one canonical text of each:

=====================  ============================================================
a string               itself; empty is no unit
bytes (a header)       decoded as UTF-8 (an invalid byte becomes U+FFFD)
an integer             its decimal digits: ``17`` and ``"17"`` are one unit
a float                integral: as the integer (``17.0`` is ``"17"``, since a
                       tensor may carry an id as FP32/FP64); else ``repr``; NaN
                       and infinities are no unit
anything else          no unit (null, booleans, lists, objects)
=====================  ============================================================

Routing hashes a header's raw bytes and a feature's text as UTF-8, so a unit
sent as ``x-user-id: émile`` (UTF-8) and as the feature ``"émile"`` land in
the same arm.

:class:`FeatureUnit` reads a ``feature:`` key's unit out of a request body
for routing, with the same protocol adapters (:mod:`sidecar.protocols`) the
capture worker reads features with, so the unit the request was routed by is
the unit its captured record carries. It parses the body, which nothing else
on the request path does; see :mod:`.routing` for when the proxy may afford
it and what happens when it does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final

from sidecar.protocols import generic, kserve, mlflow, oip, tfserving
from sidecar.protocols.base import AdapterOptions, Inputs, PayloadError
from sidecar.protocols.bodies import Body
from sidecar.protocols.routes import detect_request

__all__ = ["MAX_BODY_BYTES", "FeatureUnit", "unit_text"]

Headers = Sequence[tuple[bytes, bytes]]

# The largest (decoded) body FeatureUnit parses on the request path, which bounds what it costs
# there: about 2 µs for a one-row request of 100 bytes, 45 µs for one of 6 KB with 400 features.
MAX_BODY_BYTES: Final = 16 * 1024

# The request readers of the adapters, by protocol name, as sidecar.protocols.exchange maps them.
_READERS: Final[dict[str, Callable[[Body, AdapterOptions], Inputs]]] = {
    "kserve-v1": kserve.read_request,
    "open-inference-v2": oip.read_request,
    "tfserving": tfserving.read_request,
    "mlflow": mlflow.read_request,
    "json": generic.read_request,
}


def unit_text(value: object) -> str | None:
    """The canonical text of a unit, or None when ``value`` is no unit; see the module docstring.

    Usage::

        unit_text(b"u-17")   # "u-17"
        unit_text(17.0)      # "17"
        unit_text(True)      # None
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace") or None
    if isinstance(value, bool):
        # bool is an int subclass, and True must not quietly be the unit "1".
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return None


class FeatureUnit:
    """Reads the unit of a ``feature:NAME`` key from a request body, as the capture worker would read the feature.

    :meth:`find` gives the feature's :func:`unit_text` when every row of the
    request has the same one, and None otherwise: no body, a body over
    ``max_bytes`` (raw or decoded), one no adapter reads, a row without the
    feature, or a batch whose rows belong to different units (one request
    goes to one arm, so it cannot follow two units).

    Usage::

        units = FeatureUnit("user_id", AdapterOptions(protocol="auto"))
        units.find("/v1/models/m:predict", headers, b'{"instances": [{"user_id": "u-17", "x": 1}]}')  # "u-17"
    """

    __slots__ = ("name", "_options", "_max_bytes")

    def __init__(self, name: str, options: AdapterOptions, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.name = name
        self._options = options
        self._max_bytes = max_bytes

    def find(self, path: str, headers: Headers, body: bytes) -> str | None:
        """The unit of the request, or None; never raises for what a client sent."""
        if not body or len(body) > self._max_bytes:
            return None
        options = self._options
        try:
            request = Body(headers, body, self._max_bytes)
            protocol = options.protocol if options.protocol != "auto" else detect_request(path, request)
            if protocol is None:
                return None
            rows = _READERS[protocol](request, options).rows
        except (PayloadError, RecursionError):
            # RecursionError: bodies are bounded in size, not in depth, as parse_exchange says.
            return None
        unit: str | None = None
        name = self.name
        for row in rows:
            text = unit_text(row.get(name))
            if text is None or (unit is not None and text != unit):
                return None
            unit = text
        return unit
