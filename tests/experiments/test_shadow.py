"""Shadow: mirrors reach a real challenger fire-and-forget; slow, failing or absent ones cost the caller nothing."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import pytest

from sidecar.experiments.shadow import OUTCOMES, Shadow, ShadowResponse
from tests.servers import read_body, run_server
from tests.waiting import wait_until

PREDICT = b"/v1/models/m:predict"
# What "at once" means for one submit(): microseconds in fact; the bound leaves room for a busy machine,
# and is far below the challenger's delays (a timeout of 0.3 s, or never).
AT_ONCE = 0.02


@dataclass
class Challenger:
    """A model server with a behaviour per path; ``/slow`` answers only once ``release`` is set."""

    port: int = 0
    # (method, path, query, headers, body) of each request
    seen: list[tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        path = scope["path"]
        self.seen.append((scope["method"], path, scope["query_string"], scope["headers"], body))
        status, answer = 200, b'{"predictions": [' + body + b"]}"
        if path == "/slow":
            await self.release.wait()
        elif path == "/fail":
            status, answer = 500, b'{"error": "model crashed"}'
        elif path == "/big":
            # Streamed (chunked), with no Content-Length to go by.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(8):
                await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        elif path == "/large":
            answer = b"y" * 5000
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def run_challenger() -> AsyncIterator[Challenger]:
    challenger = Challenger()
    async with run_server(challenger) as port:
        challenger.port = port
        try:
            yield challenger
        finally:
            # Whatever still waits answers, so the server's shutdown is not held up.
            challenger.release.set()


def _lines(request_id: str) -> tuple[bytes, int]:
    """Header lines as the proxy forwards them to control (no Host, no framing)."""
    return b"content-type: application/json\r\nx-request-id: " + request_id.encode() + b"\r\n", 2


def _shadow(url: str, got: list[ShadowResponse], **options: Any) -> Shadow:
    settings: dict[str, Any] = {
        "concurrency": 4,
        "timeout": 5.0,
        "queue_size": 100,
        "queue_max_bytes": 1 << 20,
        **options,
    }
    return Shadow(url, experiment="ranker-v2", on_response=got.append, **settings)


def _submit(shadow: Shadow, path: bytes, n: int, *, method: str = "POST") -> float:
    """Submit ``n`` mirrors to ``path``; the longest a single call took, in seconds."""
    longest = 0.0
    for i in range(n):
        lines, count = _lines(f"r-{i}")
        start = perf_counter()
        shadow.submit(method, path, lines, count, b"%d" % i, f"r-{i}")
        longest = max(longest, perf_counter() - start)
    return longest


def _counts(**nonzero: int) -> dict[str, int]:
    return {**dict.fromkeys(OUTCOMES, 0), **nonzero}


@pytest.mark.anyio
async def test_a_healthy_challenger_answers_every_mirror_to_the_callback() -> None:
    got: list[ShadowResponse] = []
    async with run_challenger() as challenger:
        shadow = _shadow(challenger.url, got)
        await shadow.start()
        try:
            _submit(shadow, PREDICT + b"?explain=1", 20)
            lines, count = _lines("r-get")
            shadow.submit("GET", b"/v1/models/m", lines, count, b"", "r-get")
            await wait_until(lambda: len(got) == 21)
        finally:
            await shadow.close(asyncio.get_running_loop().time() + 5)
    by_id = {response.request_id: response for response in got}
    for i in range(20):
        response = by_id[f"r-{i}"]
        assert (response.outcome, response.status, response.body) == ("sent", 200, b'{"predictions": [%d]}' % i)
        assert (b"content-type", b"application/json") in response.headers
        assert 0 < response.latency_seconds < 5
    assert by_id["r-get"].body == b'{"predictions": []}'
    assert shadow.outcomes == _counts(sent=21)
    assert shadow.queued == shadow.queued_bytes == 0
    # The challenger got each request as control did: method, target, header lines and body.
    seen = {body: (method, path, query, headers) for method, path, query, headers, body in challenger.seen}
    method, path, query, headers = seen[b"7"]
    assert (method, path, query) == ("POST", "/v1/models/m:predict", b"explain=1")
    assert (b"x-request-id", b"r-7") in headers and (b"content-type", b"application/json") in headers
    assert seen[b""][:2] == ("GET", "/v1/models/m")


@pytest.mark.anyio
async def test_a_slow_challenger_costs_the_caller_nothing_and_the_queue_stays_bounded() -> None:
    got: list[ShadowResponse] = []
    async with run_challenger() as challenger:
        shadow = _shadow(challenger.url, got, concurrency=2, timeout=0.3, queue_size=5)
        await shadow.start()
        try:
            # All in one turn of the loop, as the proxy's requests would: the first 5 are queued, the rest dropped.
            longest = _submit(shadow, b"/slow", 200)
            assert longest < AT_ONCE
            assert shadow.queued == 5 and shadow.outcomes["dropped_queue_full"] == 195
            await wait_until(lambda: shadow.outcomes["timeout"] == 5, timeout=5)
            assert shadow.queued == 0
        finally:
            await shadow.close(asyncio.get_running_loop().time() + 5)
    assert shadow.outcomes == _counts(timeout=5, dropped_queue_full=195)
    assert {(r.outcome, r.status, r.body) for r in got} == {("timeout", 0, None)}
    # Each timed out at the bound, not later.
    assert all(0.25 < r.latency_seconds < 1.0 for r in got)


@pytest.mark.anyio
async def test_a_failing_challenger_is_counted_and_its_answers_still_reach_the_callback() -> None:
    got: list[ShadowResponse] = []
    async with run_challenger() as challenger:
        shadow = _shadow(challenger.url, got)
        await shadow.start()
        try:
            assert _submit(shadow, b"/fail", 10) < AT_ONCE
            await wait_until(lambda: len(got) == 10)
        finally:
            await shadow.close(asyncio.get_running_loop().time() + 5)
    assert shadow.outcomes == _counts(error=10)
    assert {(r.outcome, r.status, r.body) for r in got} == {("error", 500, b'{"error": "model crashed"}')}


@pytest.mark.anyio
async def test_a_challenger_that_is_down_is_counted_and_costs_the_caller_nothing() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there now: every connection is refused.
    got: list[ShadowResponse] = []
    shadow = _shadow(f"http://127.0.0.1:{port}", got)
    await shadow.start()
    try:
        assert _submit(shadow, PREDICT, 30) < AT_ONCE
        await wait_until(lambda: len(got) == 30)
    finally:
        await shadow.close(asyncio.get_running_loop().time() + 5)
    assert shadow.outcomes == _counts(error=30)
    assert {(r.outcome, r.status, r.body) for r in got} == {("error", 0, None)}


@pytest.mark.anyio
async def test_the_queue_is_bounded_in_bytes_and_bodies_not_kept_are_counted() -> None:
    got: list[ShadowResponse] = []
    # Not started: nothing leaves the queue, so what it holds is what submit() let in.
    shadow = _shadow("http://127.0.0.1:9", got, queue_max_bytes=100)
    lines, count = _lines("r")
    for size in (40, 40, 40, 30, 101):
        shadow.submit("POST", PREDICT, lines, count, b"x" * size, "r")
    shadow.submit("POST", PREDICT, lines, count, None, "r")  # a streamed body the proxy did not keep
    assert (shadow.queued, shadow.queued_bytes) == (2, 80)
    assert shadow.outcomes == _counts(dropped_queue_full=2, dropped_too_large=2)
    await shadow.close(asyncio.get_running_loop().time() + 1)
    assert shadow.outcomes == _counts(dropped_queue_full=2, dropped_too_large=2, dropped_shutdown=2)
    assert got == []


@pytest.mark.anyio
async def test_close_drains_the_queue_within_the_deadline() -> None:
    got: list[ShadowResponse] = []
    async with run_challenger() as challenger:
        shadow = _shadow(challenger.url, got, concurrency=2)
        await shadow.start()
        _submit(shadow, PREDICT, 30)
        loop = asyncio.get_running_loop()
        await shadow.close(loop.time() + 5)
        # Every queued mirror was sent before close() returned.
        assert shadow.outcomes == _counts(sent=30)
        assert len(got) == 30
        lines, count = _lines("late")
        shadow.submit("POST", PREDICT, lines, count, b"1", "late")
        assert shadow.outcomes["dropped_shutdown"] == 1


@pytest.mark.anyio
async def test_close_returns_at_its_deadline_and_counts_what_it_could_not_send() -> None:
    got: list[ShadowResponse] = []
    async with run_challenger() as challenger:
        # A long timeout: the deadline, not the timeout, ends these mirrors.
        shadow = _shadow(challenger.url, got, concurrency=2, timeout=30)
        await shadow.start()
        _submit(shadow, b"/slow", 10)
        await wait_until(lambda: len(challenger.seen) == 2)  # two in flight, eight queued
        loop = asyncio.get_running_loop()
        start = loop.time()
        await shadow.close(start + 0.3)
        assert 0.25 < loop.time() - start < 1.0
    assert shadow.outcomes == _counts(dropped_shutdown=10)
    assert got == []
    assert shadow.queued == shadow.queued_bytes == 0


@pytest.mark.anyio
async def test_response_bodies_are_kept_up_to_the_bound() -> None:
    got: list[ShadowResponse] = []
    async with run_challenger() as challenger:
        shadow = _shadow(challenger.url, got, max_body_bytes=4000, concurrency=1)
        await shadow.start()
        try:
            for path, request_id in ((b"/large", "declared"), (b"/big", "streamed"), (PREDICT, "small")):
                lines, count = _lines(request_id)
                shadow.submit("POST", path, lines, count, b"1", request_id)
            await wait_until(lambda: len(got) == 3)
        finally:
            await shadow.close(asyncio.get_running_loop().time() + 5)
    by_id = {r.request_id: r for r in got}
    # Too large, declared or streamed: answered ("sent"), but no body to pair.
    assert (by_id["declared"].outcome, by_id["declared"].status, by_id["declared"].body) == ("sent", 200, None)
    assert (by_id["streamed"].outcome, by_id["streamed"].body) == ("sent", None)
    assert by_id["small"].body == b'{"predictions": [1]}'


@pytest.mark.anyio
async def test_a_failing_callback_is_logged_once_and_mirroring_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def broken(response: ShadowResponse) -> None:
        calls.append(response.request_id)
        raise RuntimeError("pairing bug")

    async with run_challenger() as challenger:
        shadow = Shadow(
            challenger.url,
            experiment="ranker-v2",
            on_response=broken,
            concurrency=2,
            timeout=5,
            queue_size=100,
            queue_max_bytes=1 << 20,
        )
        await shadow.start()
        try:
            with caplog.at_level(logging.ERROR, logger="sidecar.experiments.shadow"):
                _submit(shadow, PREDICT, 5)
                await wait_until(lambda: len(calls) == 5)
        finally:
            await shadow.close(asyncio.get_running_loop().time() + 5)
    assert shadow.outcomes == _counts(sent=5)
    assert [record.message for record in caplog.records] == [
        "shadow ranker-v2: the response callback failed; logged once"
    ]


def test_limits_are_checked_at_construction() -> None:
    for bad in ({"concurrency": 0}, {"queue_size": 0}, {"queue_max_bytes": 0}, {"max_body_bytes": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            _shadow("http://127.0.0.1:9", [], **bad)
    with pytest.raises(ValueError, match="timeout"):
        _shadow("http://127.0.0.1:9", [], timeout=0)
    with pytest.raises(ValueError, match="URL"):
        _shadow("ftp://challenger", [])
