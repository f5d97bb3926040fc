"""Answer one admin request with an ASGI app in this process, without a socket.

The serving process's admin port forwards the monitoring endpoints over the
control channel as plain values; the monitoring process runs them through
its admin app here. No second listener, no port to secure.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message

__all__ = ["Request", "Reply", "call_app"]

# (method, path, query string, headers, body)
Request = tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]
# (status, headers, body)
Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


async def call_app(
    app: ASGIApp, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> Reply:
    """Run one HTTP request through ``app``; the whole response, as values.

    >>> import asyncio
    >>> from starlette.responses import PlainTextResponse
    >>> asyncio.run(call_app(PlainTextResponse("hi"), "GET", "/", b"", [], b""))[0]
    200
    """
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": None,
        "server": None,
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 500
    reply_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status, reply_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            reply_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, reply_headers, b"".join(chunks)
