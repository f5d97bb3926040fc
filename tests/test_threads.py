"""Background threads run at a lower CPU priority than the event loop (Linux: nice is per thread)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest

from sidecar.sinks import FileSink
from sidecar.store import PredictionStore
from sidecar.threads import NICE_INCREMENT, lower_priority

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's"),
]


def _nice(native_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id)


def _nice_of(prefix: str, earlier: set[threading.Thread]) -> int:
    """The nice value of the one thread started since ``earlier`` whose name starts with ``prefix``."""
    (thread,) = [t for t in threading.enumerate() if t.name.startswith(prefix) and t not in earlier]
    assert thread.native_id is not None
    return _nice(thread.native_id)


def test_lower_priority_lowers_the_calling_thread_only() -> None:
    before = _nice(threading.get_native_id())
    seen: list[int] = []

    def background() -> None:
        lower_priority()
        seen.append(_nice(threading.get_native_id()))

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen == [min(before + NICE_INCREMENT, 19)]
    assert _nice(threading.get_native_id()) == before


async def test_the_store_writer_and_the_file_sink_run_below_the_loop(tmp_path: Path) -> None:
    loop_nice = _nice(threading.get_native_id())
    earlier = set(threading.enumerate())
    store = PredictionStore(tmp_path)
    sink = FileSink(str(tmp_path / "predictions.jsonl"), queue_size=10, max_bytes=0, backups=0)
    await store.start()  # opens the file in the writer thread, which thereby exists
    await sink.start()
    try:
        assert _nice_of("prediction-store", earlier) == min(loop_nice + NICE_INCREMENT, 19)
        assert _nice_of("log-sink-", earlier) == min(loop_nice + NICE_INCREMENT, 19)
    finally:
        deadline = asyncio.get_running_loop().time() + 5
        await store.close(deadline)
        await sink.close(deadline)
