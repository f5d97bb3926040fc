"""What every admin endpoint shares: JSON errors, the bearer-token check and a bounded body read.

Both admin apps use them: the one the monitoring side serves, and the front
the serving process answers with (:mod:`sidecar.admin.serving`).
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["authorize", "error", "read_limited"]


def error(status: int, message: str, *, problems: list[str] | None = None, retry_after: int | None = None) -> Response:
    """A JSON error; ``retry_after`` (seconds) adds ``Retry-After``, for a 503 the client should retry."""
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def authorize(request: Request, token: str | None) -> Response | None:
    """None if the request carries the admin token, else the 401 or 403 to answer."""
    header = request.headers.get("authorization")
    if header is None:
        return Response(
            orjson.dumps({"error": "authentication required: send Authorization: Bearer $SIDECAR_ADMIN_TOKEN"}),
            status_code=401,
            media_type="application/json",
            headers={"www-authenticate": 'Bearer realm="ml-sidecar"'},
        )
    if token is None:
        return error(403, "this endpoint is disabled: SIDECAR_ADMIN_TOKEN is not set")
    scheme, _, given = header.partition(" ")
    # Constant time: the comparison must not tell an attacker how much of the token matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return error(403, "the bearer token is not SIDECAR_ADMIN_TOKEN")
    return None


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit``: an oversized body is never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
