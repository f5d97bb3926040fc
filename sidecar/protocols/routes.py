"""``auto``: which protocol an exchange speaks, from its path and then its body.

In order, the first match wins:

1. an ``Inference-Header-Content-Length`` header → ``open-inference-v2``
   (only that protocol has the binary-data extension);
2. a path ending ``/v2/models/<name>[/versions/<v>]/infer`` → ``open-inference-v2``;
3. a path ending ``/invocations`` → ``mlflow``;
4. a path ending ``/v1/models/<name>[/versions/<n> | /labels/<l>]:predict`` →
   ``tfserving``, which reads ``instances`` (the KServe V1 row format, so
   KServe V1 traffic lands here too) and columnar ``inputs``;
5. a ``text/csv`` body → ``mlflow``;
6. a JSON object with ``inputs`` as a list of tensor objects (``name`` plus
   ``shape`` or ``datatype``) → ``open-inference-v2``; with ``instances`` →
   ``tfserving``; with ``dataframe_split``/``dataframe_records`` → ``mlflow``;
   with any other ``inputs`` → ``tfserving`` (columnar);
7. anything else → no protocol: the exchange has no rows, which is not an error.

Paths are matched at their end so that a gateway prefix
(``/seldon/ns/iris/v2/models/iris/infer``) does not hide them. A known path
with a body of the wrong shape is a ``PayloadError``, from the adapter.
"""

from __future__ import annotations

import re
from typing import Any

from sidecar.protocols.base import PayloadError
from sidecar.protocols.bodies import Body
from sidecar.protocols.mlflow import CSV_TYPES

__all__ = ["detect_request", "detect_response", "path_version", "route_request"]

_OIP = re.compile(r"/v2/models/[^/]+(?:/versions/(?P<version>[^/]+))?/infer")
_TF = re.compile(r"/v1/models/[^/:]+(?:/versions/(?P<version>[0-9]+)|/labels/[^/:]+)?:predict")
_MLFLOW = re.compile(r"(?:^|/)invocations")


# Paths already matched: (protocol, version) by path. A model server answers on a handful of
# paths, and each exchange asks twice (detection, then the version), so the regular
# expressions run once per path rather than twice per exchange. Clients choose paths, so the
# memo is bounded: when full it starts over.
_ROUTES: dict[str, tuple[str | None, str | None]] = {}
_ROUTES_MAX = 1024


def _route(path: str) -> tuple[str | None, str | None]:
    """The protocol a path names and the model version in it, each None when it names none."""
    known = _ROUTES.get(path)
    if known is None:
        known = _match(path)
        if len(_ROUTES) >= _ROUTES_MAX:
            _ROUTES.clear()
        _ROUTES[path] = known
    return known


def _match(path: str) -> tuple[str | None, str | None]:
    path = path.split("?", 1)[0].rstrip("/")
    for name, pattern in (("open-inference-v2", _OIP), ("tfserving", _TF), ("mlflow", _MLFLOW)):
        match = pattern.search(path)
        if match is not None and match.end() == len(path):
            return name, match.groupdict().get("version")
    return None, None


def path_version(path: str) -> str | None:
    """The model version a path names (``.../versions/3/infer``, ``.../versions/3:predict``), or None."""
    return _route(path)[1]


def detect_request(path: str, request: Body) -> str | None:
    """The protocol of a request by the rules above, or None."""
    return route_request(path, request)[0]


def route_request(path: str, request: Body) -> tuple[str | None, str | None]:
    """:func:`detect_request`'s answer and :func:`path_version`'s, from one look at the path."""
    name, version = _route(path)
    if request.binary:
        return "open-inference-v2", version
    if name is not None:
        return name, version
    return _request_shape(request), version


def _request_shape(request: Body) -> str | None:
    """Rules 5 to 7: the protocol a request's body says."""
    if request.media_type in CSV_TYPES:
        return "mlflow"
    try:
        document = request.json()
    except PayloadError:
        return None  # an unknown path with a body that is not JSON: nothing we read
    if not isinstance(document, dict):
        return None
    if _is_tensor_list(document.get("inputs")):
        return "open-inference-v2"
    if "instances" in document:
        return "tfserving"
    if "dataframe_split" in document or "dataframe_records" in document:
        return "mlflow"
    if "inputs" in document:
        return "tfserving"
    return None


def detect_response(path: str, response: Body) -> str | None:
    """The protocol of a response alone (for response-time confidence), or None.

    Without the request the shapes are fewer: OIP ``outputs`` tensors, a
    ``predictions`` member or columnar ``outputs``, or a bare list (MLflow 1).
    """
    if response.binary:
        return "open-inference-v2"
    name, _ = _route(path)
    if name is not None:
        return name
    try:
        document = response.json()
    except PayloadError:
        return None
    if isinstance(document, list):
        return "mlflow"
    if not isinstance(document, dict):
        return None
    if _is_tensor_list(document.get("outputs")):
        return "open-inference-v2"
    if "predictions" in document or "outputs" in document:
        return "tfserving"
    return None


def _is_tensor_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) and "name" in t and ("shape" in t or "datatype" in t) for t in value)
    )
