"""The proxy's shadow queue in process mode: admission, batches for the link, and the outcome accounting.

The end-to-end path (a real sidecar process mirroring through its monitoring process, killed or not) is in
``tests/integration/test_experiments.py``; these pin the counts each step leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sidecar.experiments.shadow import OUTCOMES, MirrorRequest, Outcome
from sidecar.plane.shadow import RemoteShadow
from sidecar.records import Exchange
from sidecar.serving.saturation import Saturation

pytestmark = pytest.mark.anyio

LINES = b"content-type: application/json\r\n"


def remote(
    queue_size: int = 10, queue_max_bytes: int = 1 << 20, captured: Callable[[str], Exchange | None] | None = None
) -> RemoteShadow:
    return RemoteShadow(
        experiment="shadow-v2", queue_size=queue_size, queue_max_bytes=queue_max_bytes, captured=captured
    )


def submit(shadow: RemoteShadow, request_id: str, body: bytes | None = b'{"instances": [[1]]}') -> None:
    shadow.submit("POST", b"/predict", LINES, 1, body, request_id)


def counts(**nonzero: int) -> dict[Outcome, int]:
    return {outcome: nonzero.get(outcome, 0) for outcome in OUTCOMES}


async def test_mirrors_are_taken_in_order_within_the_batch_bounds() -> None:
    shadow = remote()
    for i, size in enumerate((10, 10, 30, 5)):
        submit(shadow, f"r-{i}", b"x" * size)
    assert (shadow.queued, shadow.queued_bytes) == (4, 55)
    # 25 bytes take the first two; a third would pass the bound.
    assert [m.request_id for m in shadow.get_nowait(10, 25)] == ["r-0", "r-1"]
    # At least one, even past the byte bound.
    assert [m.request_id for m in shadow.get_nowait(10, 1)] == ["r-2"]
    assert [m.request_id for m in await shadow.get(10)] == ["r-3"]
    assert (shadow.queued, shadow.queued_bytes, shadow.empty()) == (0, 0, True)


async def test_get_waits_for_the_next_mirror() -> None:
    shadow = remote()
    waiting = asyncio.create_task(shadow.get(10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    submit(shadow, "r-1")
    assert [m.request_id for m in await asyncio.wait_for(waiting, 1)] == ["r-1"]


async def test_the_serving_side_drops_what_it_cannot_queue_and_counts_why() -> None:
    shadow = remote(queue_size=2, queue_max_bytes=100)
    submit(shadow, "kept-1", b"x" * 40)
    submit(shadow, "too-large", b"x" * 101)
    submit(shadow, "not-kept", None)
    submit(shadow, "bytes-full", b"x" * 61)
    submit(shadow, "kept-2", b"x" * 60)
    submit(shadow, "count-full", b"x")
    shadow.close()
    submit(shadow, "after-close")
    assert [m.request_id for m in shadow.get_nowait(10)] == ["kept-1", "kept-2"]
    assert shadow.totals() == counts(dropped_too_large=2, dropped_queue_full=2, dropped_shutdown=1)


async def test_a_captured_request_carries_what_controls_capture_kept() -> None:
    exchange = Exchange(
        "r-1", 1_764_144_638.0, "POST", "/predict", [(b"content-type", b"application/json")], b"{}",
        200, [], b"{}", 0.002, "control", "random", 0.5, True,
    )  # fmt: skip
    shadow = remote(captured=lambda request_id: exchange if request_id == "r-1" else None)
    submit(shadow, "r-1")
    submit(shadow, "r-2")
    first, second = shadow.get_nowait(10)
    assert isinstance(first, MirrorRequest) and first.captured is not None
    assert (first.captured.path, first.captured.probability, first.captured.request_id_generated) == (
        "/predict",
        0.5,
        True,
    )
    assert second.captured is None


async def test_the_monitoring_processes_reports_add_up_across_a_restart() -> None:
    shadow = remote()
    shadow.outcomes["dropped_queue_full"] = 3  # the serving side's own drops
    shadow.handed(10)
    shadow.report(counts(sent=6, error=1))
    assert shadow.totals() == counts(sent=6, error=1, dropped_queue_full=3)
    # The process ends: its last report stands, and the three it never reported on are lost with it.
    shadow.fold("dropped_restart")
    assert shadow.totals() == counts(sent=6, error=1, dropped_queue_full=3, dropped_restart=3)
    # Its successor reports from zero; the totals only grow.
    shadow.handed(4)
    shadow.report(counts(sent=2))
    assert shadow.totals() == counts(sent=8, error=1, dropped_queue_full=3, dropped_restart=3)
    # A stop: everything reported, nothing lost.
    shadow.report(counts(sent=3, timeout=1))
    shadow.fold("dropped_shutdown")
    assert shadow.totals() == counts(sent=9, error=1, timeout=1, dropped_queue_full=3, dropped_restart=3)
    # The serving process's own counts (what the status page adds the live process's to) hold the folded ones.
    assert shadow.outcomes == shadow.totals()


async def test_mirrors_never_handed_over_are_counted_as_given() -> None:
    shadow = remote()
    for i in range(3):
        submit(shadow, f"r-{i}")
    shadow.drop(shadow.get_nowait(2), "dropped_restart")
    shadow.drop(shadow.get_nowait(shadow.queued), "dropped_shutdown")
    assert shadow.totals() == counts(dropped_restart=2, dropped_shutdown=1)


async def test_a_busy_proxy_queues_no_mirror_and_counts_each() -> None:
    saturation = Saturation(limit=0.8)
    shadow = RemoteShadow(experiment="shadow-v2", queue_size=10, queue_max_bytes=1 << 20, saturation=saturation)
    submit(shadow, "r-1")
    saturation.busy = True  # as a sample of a saturated window sets it
    submit(shadow, "r-2")
    submit(shadow, "r-3")
    saturation.busy = False
    submit(shadow, "r-4")
    assert [m.request_id for m in shadow.get_nowait(10)] == ["r-1", "r-4"]
    assert shadow.totals() == counts(dropped_busy=2)
