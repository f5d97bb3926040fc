"""Shadow mode in the proxy: every client gets control's answer byte for byte, and each request control answered is
mirrored to the challenger, counted by outcome, whether the challenger is healthy, slow, failing or down.

Real uvicorn servers on 127.0.0.1 (control, the challenger, a fallback) and two proxy apps over the project's own
client: one mirroring, one not, so each answer is compared with the one the same request gets without a mirror.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import orjson
import pytest

from sidecar.capture.handoff import Capture
from sidecar.experiments.definition import experiment_from_mapping
from sidecar.experiments.routing import Router
from sidecar.experiments.shadow import OUTCOMES, Shadow, ShadowResponse
from sidecar.sampling import RandomSampler
from sidecar.serving.arms import Mirror, MirrorBody, Split
from sidecar.serving.flags import Flags
from sidecar.serving.metrics import ProxyMetrics
from sidecar.serving.proxy import ProxyApp
from sidecar.upstream.client import UpstreamClient
from tests.http import RawResponse, post_in_parts, raw_request
from tests.servers import Scope, read_body, run_server
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

PREDICT = "/v1/models/m:predict"
# The challenger's delay when slow, and the shadow's timeout: the slow one always times out.
SLOW_SECONDS = 1.0
SHADOW_TIMEOUT = 0.3
# A client's answer that waited for a slow challenger would take SLOW_SECONDS at least: one that comes back
# within half of it did not wait (control itself answers at once; the rest is room for a busy machine).
PROMPT = SLOW_SECONDS / 2
# (method, path, query, headers, body) of a request a model server received
Seen = tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]


@dataclass
class Model:
    """A model server with a behaviour: ``ok``, ``slow`` (answers after SLOW_SECONDS) or ``fail`` (500)."""

    name: str
    behaviour: str = "ok"
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        self.seen.append((scope["method"], scope["path"], scope["query_string"], scope["headers"], body))
        status, answer = 200, orjson.dumps({"predictions": [len(body)], "model": self.name})
        if self.behaviour == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        elif self.behaviour == "fail":
            status, answer = 500, b'{"error": "model crashed"}'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(answer)).encode()),
            (b"x-model", self.name.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@dataclass
class Running:
    port: int  # the mirroring proxy
    plain: int  # the same proxy without a mirror
    shadow: Shadow
    mirror: Mirror
    flags: Flags
    control: Model
    challenger: Model | None
    mirrored: list[ShadowResponse]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    # Nothing listens there now: every connection is refused.
    return port


@asynccontextmanager
async def shadow_proxy(
    challenger: str, *, max_body_bytes: int = 1 << 20, control_port: int | None = None
) -> AsyncIterator[Running]:
    """A proxy mirroring to a challenger that is ``ok``, ``slow``, ``fail`` or ``down``, and one that does not."""
    control = Model("control")
    model = None if challenger == "down" else Model("challenger", challenger)
    async with AsyncExitStack() as stack:
        if control_port is None:
            control_port = await stack.enter_async_context(run_server(control))
        fallback_port = await stack.enter_async_context(run_server(Model("fallback")))
        challenger_port = closed_port() if model is None else await stack.enter_async_context(run_server(model))
        clients = [
            UpstreamClient(f"http://127.0.0.1:{port}", timeout=5, connect_timeout=2, max_connections=8)
            for port in (control_port, fallback_port)
        ]
        for client in clients:
            await client.open()
            stack.push_async_callback(client.close)
        got: list[ShadowResponse] = []
        shadow = Shadow(
            f"http://127.0.0.1:{challenger_port}",
            experiment="ranker-v2",
            on_response=got.append,
            concurrency=8,
            timeout=SHADOW_TIMEOUT,
            queue_size=100,
            queue_max_bytes=max_body_bytes,
        )
        await shadow.start()
        stack.push_async_callback(lambda: shadow.close(asyncio.get_running_loop().time() + 5))
        flags = Flags(fallback_available=True)
        mirror = Mirror(shadow, max_body_bytes=max_body_bytes)
        apps = [
            ProxyApp(
                clients[0],
                ProxyMetrics("m", ("primary", "fallback")),
                Capture(RandomSampler(0.0), model="m", max_bytes=1 << 20, queue_size=10),
                variant="primary",
                fallback=(clients[1], "fallback", flags),
                send_timeout=5,
                mirror=shadowed,
            )
            for shadowed in (mirror, None)
        ]
        port = await stack.enter_async_context(run_server(apps[0], server_header=False, date_header=False))
        plain = await stack.enter_async_context(run_server(apps[1], server_header=False, date_header=False))
        yield Running(port, plain, shadow, mirror, flags, control, model, got)


# How the challenger behaves, and the outcome each mirror then has.
BEHAVIOURS = [("ok", "sent"), ("slow", "timeout"), ("fail", "error"), ("down", "error")]


def outcomes(**nonzero: int) -> dict[str, int]:
    return {**dict.fromkeys(OUTCOMES, 0), **nonzero}


async def predict(port: int, request_id: str, body: bytes) -> tuple[RawResponse, float]:
    headers = [("content-type", "application/json"), ("x-request-id", request_id)]
    start = perf_counter()
    response = await raw_request(port, "POST", PREDICT + "?explain=1", headers, body)
    return response, perf_counter() - start


@pytest.mark.parametrize(("challenger", "outcome"), BEHAVIOURS)
async def test_every_client_gets_controls_answer_and_every_mirror_is_counted(challenger: str, outcome: str) -> None:
    async with shadow_proxy(challenger) as running:
        for i in range(6):
            body = orjson.dumps({"instances": [[float(i)] * (i + 1)]})
            shadowed, took = await predict(running.port, f"r-{i}", body)
            plain, _ = await predict(running.plain, f"r-{i}", body)
            # Byte for byte what the proxy answers without a mirror: status, headers in order, body.
            assert shadowed == plain
            assert shadowed.status == 200 and shadowed.values("x-model") == ["control"]
            assert orjson.loads(shadowed.body)["predictions"] == [len(body)]
            # The mirror is queued once the client has its answer: a slow challenger never delays it.
            assert took < PROMPT
        await wait_until(lambda: sum(running.shadow.outcomes.values()) == 6, timeout=5)
        assert running.shadow.outcomes == outcomes(**{outcome: 6})
        assert sorted(r.request_id for r in running.mirrored) == [f"r-{i}" for i in range(6)]
        assert {r.outcome for r in running.mirrored} == {outcome}
        if running.challenger is not None:
            # The challenger saw each request as control did: method, target, headers (request id included) but
            # Host, which names the server it goes to, and body.
            mirrored = [without_host(seen) for seen in running.challenger.seen]
            assert len(mirrored) == 6
            assert all(seen in [without_host(seen) for seen in running.control.seen] for seen in mirrored)
            assert {seen[-1] for seen in mirrored} == {seen[-1] for seen in running.control.seen}


def without_host(seen: Seen) -> Seen:
    method, path, query, headers, body = seen
    return method, path, query, [(k, v) for k, v in headers if k != b"host"], body


async def test_a_streamed_body_is_mirrored_whole_within_the_bound_and_dropped_past_it() -> None:
    async with shadow_proxy("ok", max_body_bytes=1024) as running:
        small = b'{"instances": [' + b"[1.0]," * 100 + b"[1.0]]}"  # 621 bytes
        large = b'{"instances": [' + b"[1.0]," * 300 + b"[1.0]]}"  # 1821 bytes
        for request_id, body in (("small", small), ("large", large)):
            response = await post_in_parts(
                running.port,
                PREDICT,
                [body[:200], body[200:]],
                [("content-type", "application/json"), ("x-request-id", request_id)],
            )
            assert response.status == 200 and orjson.loads(response.body)["predictions"] == [len(body)]
        await wait_until(lambda: sum(running.shadow.outcomes.values()) == 2, timeout=5)
        assert running.shadow.outcomes == outcomes(sent=1, dropped_too_large=1)
        assert running.challenger is not None
        assert [seen[-1] for seen in running.challenger.seen] == [small]
        assert [r.request_id for r in running.mirrored] == ["small"]
        # Nothing is kept once the requests are over.
        assert running.mirror.held == 0
        assert [seen[-1] for seen in running.control.seen] == [small, large]


async def test_requests_the_fallback_serves_are_not_mirrored() -> None:
    async with shadow_proxy("ok") as running:
        running.flags.set("use_fallback_model", True, source="api")
        for i in range(5):
            response, _ = await predict(running.port, f"f-{i}", b'{"instances": [[1.0]]}')
            assert response.values("x-model") == ["fallback"]
        running.flags.set("use_fallback_model", False, source="api")
        response, _ = await predict(running.port, "after", b'{"instances": [[1.0]]}')
        assert response.values("x-model") == ["control"]
        await wait_until(lambda: sum(running.shadow.outcomes.values()) == 1, timeout=5)
        assert running.shadow.outcomes == outcomes(sent=1)
        assert [r.request_id for r in running.mirrored] == ["after"]


async def test_a_request_control_did_not_answer_is_not_mirrored() -> None:
    # Control is down: the proxy answers 502 itself, and there is no answer of control's to pair a mirror with.
    async with shadow_proxy("ok", control_port=closed_port()) as running:
        for i in range(3):
            response, _ = await predict(running.port, f"r-{i}", b'{"instances": [[1.0]]}')
            assert response.status == 502
        # A mirror would be queued before the proxy's answer is sent; give the workers a moment anyway.
        await asyncio.sleep(0.1)
        assert running.shadow.outcomes == outcomes()
        assert running.challenger is not None and running.challenger.seen == []


async def test_a_control_5xx_is_an_answer_and_is_mirrored() -> None:
    control = Model("control", "fail")
    async with run_server(control) as control_port, shadow_proxy("ok", control_port=control_port) as running:
        response, _ = await predict(running.port, "r-1", b'{"instances": [[1.0]]}')
        assert response.status == 500
        await wait_until(lambda: running.shadow.outcomes["sent"] == 1, timeout=5)
        assert [(r.request_id, r.status) for r in running.mirrored] == [("r-1", 200)]


def idle_shadow() -> Shadow:
    """A Shadow that is never started: nothing is sent, and nothing needs closing."""
    return Shadow(
        "http://127.0.0.1:9", experiment="e", on_response=print, concurrency=1, timeout=1.0, queue_size=10,
        queue_max_bytes=1000,
    )  # fmt: skip


def test_streamed_bodies_kept_for_mirrors_are_bounded_in_total() -> None:
    # Not started: no mirror is sent; only the proxy's side of the bound is exercised.
    shadow = idle_shadow()
    mirror = Mirror(shadow, max_body_bytes=1000)
    first, second = MirrorBody(mirror), MirrorBody(mirror)
    first.add(b"a" * 600)
    second.add(b"b" * 300)
    second.add(b"b" * 200)  # 600 + 500 > 1000 in flight: the second body is given up, and its bytes given back
    first.add(b"a" * 300)
    assert mirror.held == 900
    first.finish()
    second.add(b"b" * 10)  # nothing more is kept once a body is given up
    second.finish()
    assert (first.body(), second.body()) == (b"a" * 900, None)
    first.release()
    second.release()
    first.release()  # idempotent: the request's end may come after a release
    assert mirror.held == 0
    # One body alone past the bound is given up too, and a body never finished is not whole.
    alone, unfinished = MirrorBody(mirror), MirrorBody(mirror)
    alone.add(b"c" * 1001)
    unfinished.add(b"d" * 10)
    assert (alone.body(), unfinished.body(), mirror.held) == (None, None, 10)
    unfinished.release()
    assert mirror.held == 0
    with pytest.raises(ValueError, match="max_body_bytes must be at least 1"):
        Mirror(shadow, max_body_bytes=0)


def test_a_proxy_takes_a_split_or_a_mirror_not_both() -> None:
    experiment = experiment_from_mapping(
        {
            "name": "e",
            "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://challenger"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    client = UpstreamClient("http://127.0.0.1:1", timeout=1, connect_timeout=1, max_connections=1)
    metrics = ProxyMetrics("m", ("control", "treatment"))
    shadow = idle_shadow()
    capture = Capture(RandomSampler(0.0), model="m", max_bytes=1, queue_size=1)
    with pytest.raises(ValueError, match="splits the traffic or mirrors it, not both"):
        ProxyApp(
            client,
            metrics,
            capture,
            variant="control",
            send_timeout=5,
            split=Split(Router(experiment), [client, client], metrics),
            mirror=Mirror(shadow, max_body_bytes=1000),
        )
