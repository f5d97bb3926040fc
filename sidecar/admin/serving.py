"""The admin endpoints that belong to the serving process: health, readiness and the runtime flags.

They answer from the serving process whatever the monitoring side is doing,
so that a kubelet's probes and an operator's switch to the fallback model
never wait on (or die with) the monitoring process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.admin.health import Readiness
from sidecar.admin.requests import authorize, error, read_limited
from sidecar.serving.flags import FLAGS, Flags

__all__ = ["serving_routes"]

# A flag's body is a boolean and a reason.
_FLAG_BODY_MAX = 64 << 10


def serving_routes(
    readiness: Readiness,
    flags: Flags,
    *,
    monitoring: Callable[[], dict[str, Any]],
    admin_token: str | None,
) -> list[Route]:
    """``/healthz``, ``/readyz``, ``GET /api/v1/flags`` and ``POST /api/v1/flags/{name}``.

    ``monitoring`` gives the informational part of ``/readyz`` about the
    monitoring side (the reference in use, and in process mode the state of
    the monitoring process); it never decides readiness.

    Usage::

        Starlette(routes=[*serving_routes(readiness, flags, monitoring=lambda: {}, admin_token=None), ...])
    """

    async def healthz(request: Request) -> Response:
        # Answering at all proves the process and its event loop are alive;
        # liveness must not depend on the upstream, or a slow model gets the
        # healthy sidecar restarted.
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        report = await readiness.check()
        body = {
            "ready": report.ready,
            "reasons": list(report.reasons),
            "checked_at": report.checked_at,
            # Informational: learning a reference, or a restarting monitoring
            # process, is no reason to refuse traffic: the model still serves.
            **monitoring(),
            # Informational too: on the fallback model the pod still serves.
            "flags": flags.to_json(),
        }
        return JSONResponse(body, status_code=200 if report.ready else 503)

    async def get_flags(request: Request) -> Response:
        return Response(orjson.dumps(flags.to_json()), media_type="application/json")

    async def post_flag(request: Request) -> Response:
        denied = authorize(request, admin_token)
        if denied is not None:
            return denied
        name = request.path_params["name"]
        if name not in FLAGS:
            return error(404, f"no flag {name!r}; the flags are {', '.join(FLAGS)}")
        body = await read_limited(request, _FLAG_BODY_MAX)
        if body is None:
            return error(413, "the body is larger than 64 KiB")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return error(400, f"the body is not valid JSON: {exc}")
        value = document.get("value") if isinstance(document, dict) else None
        reason = document.get("reason") if isinstance(document, dict) else None
        if not isinstance(value, bool) or not (reason is None or isinstance(reason, str)):
            return error(422, 'expected {"value": true|false, "reason"?: "..."}')
        try:
            flags.set(name, value, source="api", reason=reason)
        except ValueError as exc:
            return error(409, str(exc))
        return Response(orjson.dumps(flags.to_json()), media_type="application/json")

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/api/v1/flags", get_flags, methods=["GET"]),
        Route("/api/v1/flags/{name}", post_flag, methods=["POST"]),
    ]
