"""Real servers for tests: uvicorn on 127.0.0.1, port 0, in the test's own loop.

As in uvicorn's ``tests/utils.py:run_server``: a real server, a real socket,
no transport mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn

from sidecar.config import Settings
from sidecar.server import Sidecar
from sidecar.upstream.client import UpstreamClient

Scope = dict[str, Any]


class _Server(uvicorn.Server):
    # Signals belong to pytest, not to the test server.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def run_server(app: Any, **config: Any) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1 with a free port; yield the port."""
    # No WebSocket support: none of the test apps speak it, and older uvicorn
    # releases import websockets' deprecated legacy module for it.
    options = {"ws": "none", "lifespan": "off", "log_config": None, "access_log": False, **config}
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, **options))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    peer: tuple[str, int]


@dataclass
class Upstream:
    """A model-server stand-in with one route per behaviour under test."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    saw_disconnect: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path: str = scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        if path == "/digest":
            # Hash the body as it streams, so a 100 MB upload is never held here either.
            digest, size = hashlib.sha256(), 0
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                digest.update(chunk)
                size += len(chunk)
                if not message.get("more_body"):
                    break
            await _respond(send, 200, orjson.dumps({"sha256": digest.hexdigest(), "size": size}))
            return
        body = await read_body(receive)
        self.seen.append(
            Seen(scope["method"], path, scope["query_string"].decode(), scope["headers"], body, scope["client"])
        )
        if path == "/echo":
            headers = [(b"content-type", b"application/octet-stream")]
            await _respond(send, 200, body, headers)
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            payload = b"" if status in (204, 304) else orjson.dumps({"status": status})
            extra = [(b"location", b"/elsewhere")] if 300 <= status < 400 else []
            await _respond(send, status, payload, extra, length=status not in (204, 304))
        elif path == "/bytes":
            size = int(query.get("size", "1024"))
            await _respond(send, 200, _pattern(size), [(b"content-type", b"application/octet-stream")])
        elif path == "/chunked":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for i in range(5):
                await send({"type": "http.response.body", "body": f"chunk-{i};".encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/sse":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            )
            await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
            await asyncio.wait_for(self.release.wait(), timeout=10)
            await send({"type": "http.response.body", "body": b"data: second\n\n", "more_body": True})
            self.finished.set()
            await send({"type": "http.response.body", "body": b""})
        elif path == "/slow":
            await asyncio.sleep(float(query.get("delay", "1")))
            await _respond(send, 200, b'{"predictions": [0.5]}', [(b"content-type", b"application/json")])
        elif path == "/hang":
            # Never answers; the only way out is the sidecar dropping the connection.
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect.set()
        elif path == "/headers":
            headers = [
                (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
                (b"server", b"test-upstream/1.0"),
                (b"set-cookie", b"a=1"),
                (b"set-cookie", b"b=2"),
                (b"connection", b"x-upstream-hop"),
                (b"x-upstream-hop", b"secret"),
                (b"keep-alive", b"timeout=5"),
                (b"proxy-authenticate", b"Basic"),
                (b"x-model-version", b"7"),
            ]
            await _respond(send, 200, b"ok", headers)
        else:
            await _respond(send, 404, b'{"error": "not found"}', [(b"content-type", b"application/json")])


async def read_body(receive: Any) -> bytes:
    """The whole request body of an ASGI request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


def _pattern(size: int) -> bytes:
    # Every byte value, repeated: a binary body with no text structure.
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


async def _respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None, *, length: bool = True
) -> None:
    all_headers = list(headers or [])
    if length:
        all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def run_upstream() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    # The test upstream keeps its own Date/Server out, so the /headers route's are the only ones.
    async with run_server(upstream, server_header=False, date_header=False) as port:
        upstream.port = port
        yield upstream


@asynccontextmanager
async def run_sidecar(upstream_url: str, env: Mapping[str, str] | None = None) -> AsyncIterator[Sidecar]:
    with tempfile.TemporaryDirectory(prefix="sidecar-state-") as state_dir:
        async with _sidecar(upstream_url, {"SIDECAR_STATE_DIR": state_dir, **(env or {})}) as sidecar:
            yield sidecar


# SIDECAR_MONITORING_PLANE when a test does not set it; conftest's monitoring_plane fixture sets it per test.
default_plane = "process"


@asynccontextmanager
async def _sidecar(upstream_url: str, env: Mapping[str, str]) -> AsyncIterator[Sidecar]:
    settings = Settings.from_env(
        {
            "SIDECAR_MONITORING_PLANE": default_plane,
            "SIDECAR_UPSTREAM_URL": upstream_url,
            "SIDECAR_LISTEN_HOST": "127.0.0.1",
            "SIDECAR_LISTEN_PORT": "0",
            "SIDECAR_ADMIN_HOST": "127.0.0.1",
            "SIDECAR_ADMIN_PORT": "0",
            "SIDECAR_SHUTDOWN_TIMEOUT_SECONDS": "2",
            **env,
        }
    )
    async with Sidecar(settings) as sidecar:
        yield sidecar


@asynccontextmanager
async def client_for(port: int) -> AsyncIterator[UpstreamClient]:
    """The project's own client, opened on a test server's port."""
    client = UpstreamClient(f"http://127.0.0.1:{port}", timeout=2, connect_timeout=2, max_connections=4)
    await client.open()
    try:
        yield client
    finally:
        await client.close()


# The line ``ml-sidecar serve`` logs once both ports listen.
_LISTENING = re.compile(rb"proxying http://[^:]+:(\d+) -> .*admin on http://[^:]+:(\d+)")


@asynccontextmanager
async def serve_process(
    upstream_url: str, env: Mapping[str, str] | None = None, command: Sequence[str] = (sys.executable, "-m", "sidecar")
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, int]]:
    """``COMMAND serve`` as a real process on free ports; yield it with its proxy and admin ports."""
    with tempfile.TemporaryDirectory(prefix="sidecar-state-") as state_dir:
        variables = {
            **os.environ,
            "SIDECAR_UPSTREAM_URL": upstream_url,
            "SIDECAR_LISTEN_HOST": "127.0.0.1",
            "SIDECAR_LISTEN_PORT": "0",
            "SIDECAR_ADMIN_HOST": "127.0.0.1",
            "SIDECAR_ADMIN_PORT": "0",
            "SIDECAR_STATE_DIR": state_dir,
            **(env or {}),
        }
        process = await asyncio.create_subprocess_exec(
            *command, "serve", env=variables, stderr=asyncio.subprocess.PIPE, cwd=state_dir
        )
        assert process.stderr is not None
        try:
            ports = None
            while ports is None:
                line = await asyncio.wait_for(process.stderr.readline(), timeout=30)
                assert line, "ml-sidecar exited before listening"
                if match := _LISTENING.search(line):
                    ports = int(match.group(1)), int(match.group(2))
            yield process, *ports
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
