"""Fuzz: arbitrary bodies and content types pass through unchanged, and capture never breaks.

Hypothesis drives a synchronous client; the upstream and the sidecar run on
their own event loop in a background thread, started once for the module.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from sidecar.server import Sidecar
from tests.servers import read_body, run_server, run_sidecar

Scope = dict[str, Any]


async def mirror(scope: Scope, receive: Any, send: Any) -> None:
    """Answer with the request body, under the content type and encoding the client asked for."""
    body = await read_body(receive)
    headers = dict(scope["headers"])
    reply = [(b"content-type", headers[b"x-reply-type"])] if headers.get(b"x-reply-type") else []
    if b"x-reply-encoding" in headers:
        reply.append((b"content-encoding", headers[b"x-reply-encoding"]))
    await send({"type": "http.response.start", "status": int(headers.get(b"x-reply-status", b"200")), "headers": reply})
    await send({"type": "http.response.body", "body": body})


class Stack:
    """Upstream + sidecar on a private loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.sidecar: Sidecar | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        async with (
            run_server(mirror) as port,
            run_sidecar(f"http://127.0.0.1:{port}", {"SIDECAR_LOG_SINK": "none"}) as sidecar,
        ):
            self.sidecar = sidecar
            self.ready.set()
            await self.stop.wait()

    def __enter__(self) -> Stack:
        self.thread.start()
        if not self.ready.wait(timeout=15):
            raise RuntimeError("the fuzz stack did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=15)
        self.loop.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running


content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/csv",
        "application/octet-stream",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ]
)
json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
).map(orjson.dumps)
bodies = st.binary(max_size=2048) | json_bodies
paths = st.sampled_from(["/v1/models/m:predict", "/v2/models/m/infer", "/invocations", "/predict", "/"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=paths,
    body=bodies,
    request_type=content_types,
    reply_type=content_types,
    gzip_claimed=st.booleans(),
    status=st.sampled_from([200, 400, 500]),
)
def test_arbitrary_payloads_pass_through_unchanged(
    stack: Stack, path: str, body: bytes, request_type: str, reply_type: str, gzip_claimed: bool, status: int
) -> None:
    assert stack.sidecar is not None
    connection = http.client.HTTPConnection("127.0.0.1", stack.sidecar.proxy_port, timeout=10)
    headers = {"x-reply-type": reply_type, "x-reply-status": str(status)}
    if request_type:
        headers["content-type"] = request_type
    if gzip_claimed:
        # A body that claims gzip but is not: capture must cope, the bytes must not change.
        headers["content-encoding"] = "gzip"
        headers["x-reply-encoding"] = "gzip"
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == status
        assert response.read() == body
        assert response.getheader("content-type") == (reply_type or None)
    finally:
        connection.close()


def test_capture_path_survived_the_fuzzing(stack: Stack) -> None:
    sidecar = stack.sidecar
    assert sidecar is not None
    connection = http.client.HTTPConnection("127.0.0.1", sidecar.admin_port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        exposition = connection.getresponse().read().decode()
    finally:
        connection.close()
    samples = [sample for family in text_string_to_metric_families(exposition) for sample in family.samples]
    errors = {s.labels["stage"]: s.value for s in samples if s.name == "mlsidecar_monitor_errors_total"}
    # The monitoring process is still the first one, and no exchange tripped a bug in it.
    assert errors == {"process": 0, "subscriber": 0}
    assert [s.value for s in samples if s.name == "mlsidecar_monitor_restarts_total"] == [0]
    assert [s.value for s in samples if s.name == "mlsidecar_monitor_up"] == [1]
    # And it did see the fuzzed traffic: each exchange was either read or counted unreadable.
    captured = sum(s.value for s in samples if s.name == "mlsidecar_captures_total")
    unreadable = [
        s.value for s in samples if s.name == "mlsidecar_capture_dropped_total" and s.labels["reason"] == "parse_error"
    ]
    assert captured > 0 and unreadable[0] > 0
