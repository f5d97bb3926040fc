"""The tap: a real challenger's answers to a real Shadow's mirrors onto a real capture hand-off, flagged shadow."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from sidecar.capture.handoff import Capture, Handoff
from sidecar.experiments.shadow import Shadow, ShadowResponse
from sidecar.experiments.tap import ShadowTap, answer_status
from sidecar.records import Exchange
from sidecar.sampling import RandomSampler
from tests.experiments.test_shadow import PREDICT, run_challenger
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

JSON = [(b"content-type", b"application/json")]


def capture_of(queue_size: int = 100) -> Capture:
    return Capture(RandomSampler(1.0), model="iris", max_bytes=1 << 20, queue_size=queue_size)


def submit_control(capture: Capture, request_id: str, body: bytes, status: int = 200) -> None:
    """Control's exchange, as the proxy submits it before it mirrors the same request."""
    capture.submit(
        request_id=request_id,
        request_id_generated=True,
        timestamp=1_764_144_638.0,
        method="POST",
        path="/v1/models/m:predict",
        request_headers=JSON,
        request_body=body,
        status_code=status,
        response_headers=JSON,
        response_body=b'{"predictions": [0]}',
        latency_seconds=0.003,
        variant="control",
        probability=1.0,
    )


def mirror(shadow: Shadow, path: bytes, request_id: str, body: bytes) -> None:
    lines = b"content-type: application/json\r\nx-request-id: " + request_id.encode() + b"\r\n"
    shadow.submit("POST", path, lines, 2, body, request_id)


def shadow_for(url: str, capture: Capture, tap: ShadowTap, **options: Any) -> Shadow:
    settings: dict[str, Any] = {"concurrency": 2, "timeout": 5.0, "queue_size": 100, "queue_max_bytes": 1 << 20}
    return Shadow(url, experiment="shadow-v2", on_response=tap, captured=capture.captured, **{**settings, **options})


async def test_an_answer_to_a_captured_request_carries_controls_request_and_the_whole_response() -> None:
    capture = capture_of()
    tap = ShadowTap(capture.queue.put_spare, variant="challenger")
    async with run_challenger() as challenger:
        shadow = shadow_for(challenger.url, capture, tap)
        await shadow.start()
        try:
            submit_control(capture, "r-1", b"7")
            mirror(shadow, PREDICT, "r-1", b"7")
            # The last capture was r-1's: r-2 (sampled out) is mirrored without it.
            mirror(shadow, PREDICT, "r-2", b"8")
            # Captured, but control failed: no prediction of control's will be stored to pair with.
            submit_control(capture, "r-3", b"9", status=503)
            mirror(shadow, PREDICT, "r-3", b"9")
            await wait_until(lambda: capture.queue.qsize() == 5)
        finally:
            await shadow.close(asyncio.get_running_loop().time() + 5)
    queued = [Exchange._make(e) for e in capture.queue.get_nowait(10)]
    assert [e.request_id for e in queued if not e.shadow] == ["r-1", "r-3"]
    by_id = {answer.request_id: answer for answer in queued if answer.shadow}
    captured, uncaptured = by_id["r-1"], by_id["r-2"]
    assert captured.shadow and uncaptured.shadow
    assert (captured.method, captured.path, captured.request_headers, captured.request_body) == (
        "POST",
        "/v1/models/m:predict",
        tuple(JSON),  # queued as a tuple, as the hand-off queues every exchange
        b"7",
    )
    assert (captured.timestamp, captured.request_id_generated, captured.probability) == (1_764_144_638.0, True, 1.0)
    assert (captured.status_code, captured.variant) == (200, "challenger")
    assert captured.response_body == b'{"predictions": [7]}'
    assert (b"content-type", b"application/json") in captured.response_headers
    # Not captured: its status and latency only, no bodies to carry.
    assert (uncaptured.path, uncaptured.request_body, uncaptured.response_body) == ("", b"", b"")
    assert uncaptured.status_code == 200 and 0 < uncaptured.latency_seconds < 5
    assert (by_id["r-3"].path, by_id["r-3"].request_body, by_id["r-3"].status_code) == ("", b"", 200)
    assert tap.dropped == 0


async def test_answers_without_a_complete_response_get_the_status_the_proxy_would_have_given() -> None:
    capture = capture_of()
    tap = ShadowTap(capture.queue.put_spare, variant="challenger")
    async with run_challenger() as challenger:
        shadow = shadow_for(challenger.url, capture, tap, timeout=0.3)
        await shadow.start()
        try:
            mirror(shadow, b"/fail", "failed", b"1")
            mirror(shadow, b"/slow", "slow", b"1")
            await wait_until(lambda: capture.queue.qsize() == 2, timeout=5)
        finally:
            await shadow.close(asyncio.get_running_loop().time() + 5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = shadow_for(f"http://127.0.0.1:{port}", capture, tap)  # nothing listens there
    await down.start()
    try:
        mirror(down, PREDICT, "refused", b"1")
        await wait_until(lambda: capture.queue.qsize() == 3)
    finally:
        await down.close(asyncio.get_running_loop().time() + 5)
    statuses = {answer.request_id: answer.status_code for answer in map(Exchange._make, capture.queue.get_nowait(10))}
    assert statuses == {"failed": 500, "slow": 504, "refused": 502}


def test_the_status_rule() -> None:
    def response(outcome: Any, status: int) -> ShadowResponse:
        return ShadowResponse("r", outcome, status, [], None, 0.1)

    assert [answer_status(response(*case)) for case in (("sent", 404), ("error", 503), ("error", 0))] == [404, 503, 502]
    # Headers came, then the body did not: still a timeout, whatever the status said.
    assert (answer_status(response("timeout", 0)), answer_status(response("timeout", 200))) == (504, 504)
    assert answer_status(response("error", 200)) == 502  # the challenger broke HTTP mid-body


def test_answers_take_only_the_hand_offs_spare_half() -> None:
    handoff = Handoff(maxsize=4, max_bytes=1 << 20)
    tap = ShadowTap(handoff.put_spare, variant="challenger")
    answer = ShadowResponse("r", "sent", 200, [], b"{}", 0.01)
    tap(answer)
    assert (handoff.qsize(), tap.dropped) == (1, 0)
    control = Exchange("c", 0.0, "POST", "/", [], b"{}", 200, [], b"{}", 0.0, "control", "random", 1.0)
    assert handoff.put_nowait(control)
    tap(answer)  # two of four taken: the other half is control's
    assert (handoff.qsize(), tap.dropped) == (2, 1)
    # Control's captures still fill the queue to its bound.
    assert handoff.put_nowait(control) and handoff.put_nowait(control) and not handoff.put_nowait(control)
    # In bytes too: an answer may not take the queue past half its bytes.
    small = Handoff(maxsize=100, max_bytes=2_000)
    tapped = ShadowTap(small.put_spare, variant="challenger")
    tapped(ShadowResponse("r", "sent", 200, [], b"{}", 0.01))
    tapped(ShadowResponse("r", "sent", 200, [], b"{}", 0.01))
    assert (small.qsize(), tapped.dropped) == (1, 1) and small.nbytes <= 1_000
