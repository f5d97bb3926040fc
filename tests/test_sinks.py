"""Log sinks against real files, pipes and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.capture.privacy import Anonymizer, PiiMode
from sidecar.exceptions import SidecarError
from sidecar.records import PredictionRecord, rfc3339
from sidecar.sinks import (
    CE_TYPE,
    FileSink,
    HttpSink,
    LogBatch,
    LogMetrics,
    Sink,
    StdoutSink,
    build_sinks,
    parse_sink_spec,
)
from tests.records import make_record as base_record
from tests.servers import run_server

pytestmark = pytest.mark.anyio

T0 = 1_764_144_638.123  # 2025-11-26T08:10:38.123Z


def make_record(request_id: str = "req-1", row: int = 0, features: dict[str, Any] | None = None) -> PredictionRecord:
    return base_record(
        timestamp=T0,
        request_id=request_id,
        row=row,
        model_name="iris",
        model_version="3",
        features={"sepal_length": 5.1, "species_hint": "setosa"} if features is None else features,
        prediction="setosa",
        confidence=0.93,
        scores=[0.93, 0.05, 0.02],
        latency_ms=4.2,
        probability=0.5,
    )


def make_batch(request_id: str = "req-1", rows: int = 1) -> LogBatch:
    return LogBatch.from_records([make_record(request_id, row) for row in range(rows)])


def padded(index: int, size: int = 100) -> bytes:
    """A JSON line of exactly ``size`` bytes, newline excluded."""
    head = orjson.dumps({"i": index, "pad": ""})
    return orjson.dumps({"i": index, "pad": "x" * (size - len(head))})


async def close_within(sink: Sink, seconds: float) -> None:
    await sink.close(asyncio.get_running_loop().time() + seconds)


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@dataclass
class Seen:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An event collector: records each request, answers ``statuses`` in turn (then 200).

    With ``delay`` it answers only after that many seconds, unless the client
    disconnects first.
    """

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.append(Seen(scope["path"], scope["query_string"].decode(), headers, body))
        if self.delay:
            try:
                # After the body, the next message is the client's disconnect.
                await asyncio.wait_for(receive(), self.delay)
                return
            except TimeoutError:
                pass
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[str]:
    async with run_server(receiver) as port:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def refused_url() -> Iterator[str]:
    """A URL whose port is bound but not listening, so connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/events"


# --- SIDECAR_LOG_SINK ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        ("stdout", ("stdout",)),
        (" STDOUT , file:/var/log/p.jsonl ", ("stdout", "file:/var/log/p.jsonl")),
        ("none", ("none",)),
        (
            "file:p.jsonl,https://c.example:8443/v1/events?key=a",
            ("file:p.jsonl", "https://c.example:8443/v1/events?key=a"),
        ),
    ],
)
def test_parse_sink_spec_accepts(text: str, entries: tuple[str, ...]) -> None:
    assert parse_sink_spec(text) == entries


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "found an empty entry"),
        ("stdout,", "found an empty entry"),
        ("syslog", "found 'syslog'"),
        ("file:", "file:/path"),
        ("file:///var/log/p.jsonl", "file:/path"),
        ("http://", "needs a host"),
        ("http://collector:99999/e", "port from 1 to 65535"),
        ("http://collector/e#frag", "no #fragment"),
        ("stdout,stdout", "found stdout twice"),
        ("http://a/e,http://b/e", "found http twice"),
        ("none,stdout", "none cannot be combined"),
    ],
)
def test_parse_sink_spec_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="expected a comma-separated list") as info:
        parse_sink_spec(text)
    assert message in str(info.value)


async def test_build_sinks_gives_one_sink_per_entry_and_none_for_none(tmp_path: Path) -> None:
    options: dict[str, Any] = {
        "source": "ml-sidecar/iris",
        "queue_size": 10,
        "file_max_bytes": 0,
        "file_backups": 0,
        "http_timeout": 1.0,
    }
    assert build_sinks(parse_sink_spec("none"), **options) == []
    sinks = build_sinks(parse_sink_spec(f"stdout,file:{tmp_path / 'p.jsonl'},http://127.0.0.1:1/e"), **options)
    assert [type(s) for s in sinks] == [StdoutSink, FileSink, HttpSink]
    assert [s.name for s in sinks] == ["stdout", "file", "http"]
    for sink in sinks:
        await close_within(sink, 1)


# --- the queue and the metric -------------------------------------------------------------------


def test_offer_is_synchronous() -> None:
    assert not inspect.iscoroutinefunction(Sink.offer)


def test_log_batch_serialises_each_row_with_to_log() -> None:
    records = [make_record("req-9", row) for row in range(3)]
    batch = LogBatch.from_records(records)
    assert batch.request_id == "req-9" and batch.timestamp == T0
    assert [orjson.loads(line) for line in batch.lines] == [orjson.loads(orjson.dumps(r.to_log())) for r in records]
    with pytest.raises(ValueError):
        LogBatch.from_records([])


async def test_metrics_show_every_sink_and_outcome_from_start_up(tmp_path: Path) -> None:
    sinks = build_sinks(
        parse_sink_spec(f"stdout,file:{tmp_path / 'p.jsonl'}"),
        source="ml-sidecar/iris",
        queue_size=2,
        file_max_bytes=0,
        file_backups=0,
        http_timeout=1.0,
    )
    registry = CollectorRegistry()
    registry.register(LogMetrics("iris", sinks))

    def value(sink: str, outcome: str) -> float | None:
        labels = {"model": "iris", "sink": sink, "outcome": outcome}
        return registry.get_sample_value("mlsidecar_log_records_total", labels)

    assert {(s, o): value(s, o) for s in ("stdout", "file") for o in ("written", "dropped", "failed")} == {
        (s, o): 0.0 for s in ("stdout", "file") for o in ("written", "dropped", "failed")
    }
    file_sink = sinks[1]
    file_sink.offer(make_batch(rows=3))  # more rows than the queue holds: dropped whole
    file_sink.offer(make_batch(rows=2))
    file_sink.offer(make_batch(rows=1))  # the queue is full
    assert value("file", "dropped") == 4
    await file_sink.start()
    await close_within(file_sink, 2)
    await close_within(sinks[0], 1)
    assert value("file", "written") == 2
    file_sink.offer(make_batch())  # after close
    assert file_sink.counts() == {"written": 2, "dropped": 5, "failed": 0}


# --- stdout -------------------------------------------------------------------------------------


async def test_stdout_sink_writes_json_lines_to_its_stream() -> None:
    read_fd, write_fd = os.pipe()
    with open(read_fd, "rb") as reader, open(write_fd, "wb") as writer:
        sink = StdoutSink(queue_size=100, stream=writer)
        await sink.start()
        sink.offer(make_batch("a", rows=2))
        sink.offer(make_batch("b"))
        await close_within(sink, 2)
        writer.close()
        lines = reader.read().splitlines()
    assert [(r["request_id"], r["row"]) for r in map(orjson.loads, lines)] == [("a", 0), ("a", 1), ("b", 0)]
    assert sink.counts() == {"written": 3, "dropped": 0, "failed": 0}


async def test_stdout_sink_defaults_to_standard_output(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    [sink] = build_sinks(
        ("stdout",), source="s", queue_size=10, file_max_bytes=0, file_backups=0, http_timeout=1.0
    )  # built inside the test, so it holds the captured stdout
    await sink.start()
    batch = make_batch()
    sink.offer(batch)
    await close_within(sink, 2)
    assert capsysbinary.readouterr().out == batch.lines[0] + b"\n"


class CountingStream(io.BytesIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any, /) -> int:
        self.writes += 1
        return super().write(data)


async def test_batches_offered_close_together_go_out_in_one_write() -> None:
    stream = CountingStream()
    sink = StdoutSink(queue_size=1_000, stream=stream)
    await sink.start()
    sink.offer(make_batch("a"))
    await asyncio.sleep(0.01)  # the worker has woken, and waits for more
    sink.offer(make_batch("b", rows=2))
    await wait_until(lambda: sink.written == 3)
    assert stream.writes == 1
    await close_within(sink, 2)


async def test_a_half_full_queue_or_close_ends_the_gathering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sidecar.sinks.files._GATHER_SECONDS", 30.0)
    stream = CountingStream()
    sink = StdoutSink(queue_size=10, stream=stream)
    await sink.start()
    sink.offer(make_batch("a"))
    await asyncio.sleep(0.01)
    sink.offer(make_batch("b", rows=4))  # 5 of 10 rows: written now, not in 30 s
    await wait_until(lambda: sink.written == 5, timeout=5)
    sink.offer(make_batch("c"))
    started = time.perf_counter()
    await close_within(sink, 5)  # and the last one is written at close, without waiting either
    assert time.perf_counter() - started < 5
    assert (sink.written, stream.writes) == (6, 2)


async def test_a_queue_full_in_bytes_drops_whole_batches_and_counts_them(tmp_path: Path) -> None:
    # Not started, so nothing drains the queue: as when the sink's writes are stuck.
    path = tmp_path / "p.jsonl"
    sink = FileSink(str(path), queue_size=10_000, max_bytes=0, backups=0, queue_max_bytes=1 << 20)
    for i in range(40):  # 4 MB of 100 kB lines offered to a 1 MiB queue; rows alone would take them all
        sink.offer(LogBatch(f"r{i}", T0, (padded(i, 100_000),)))
        assert sink.queued_bytes <= 1 << 20
    assert sink.counts() == {"written": 0, "dropped": 30, "failed": 0}  # 10 fit, with their overhead
    sink.offer(make_batch("small"))  # what is left still takes a small one
    await sink.start()
    await close_within(sink, 5)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line.get("i", line.get("request_id")) for line in lines] == [*range(10), "small"]
    assert sink.counts() == {"written": 11, "dropped": 30, "failed": 0}
    assert sink.queued_bytes == 0


async def test_a_batch_larger_than_the_byte_bound_goes_through_an_empty_queue_only() -> None:
    stream = io.BytesIO()
    sink = StdoutSink(queue_size=100, queue_max_bytes=10_000, stream=stream)
    big = LogBatch("big", T0, (padded(0, 50_000),))
    assert big.nbytes > 10_000
    sink.offer(big)  # alone: a bound below one batch would otherwise refuse it for ever
    sink.offer(make_batch("after"))  # the queue is over its bound until the big one is written
    assert sink.counts()["dropped"] == 1
    await sink.start()
    await wait_until(lambda: sink.written == 1)
    sink.offer(make_batch("later"))
    await close_within(sink, 2)
    assert [orjson.loads(line).get("request_id") for line in stream.getvalue().splitlines()] == [None, "later"]
    with pytest.raises(ValueError, match="queue_max_bytes"):
        StdoutSink(queue_size=1, queue_max_bytes=0)


async def test_a_queue_half_full_in_bytes_ends_the_gathering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sidecar.sinks.files._GATHER_SECONDS", 30.0)
    stream = CountingStream()
    sink = StdoutSink(queue_size=1_000, queue_max_bytes=100_000, stream=stream)
    await sink.start()
    sink.offer(LogBatch("a", T0, (padded(0, 10_000),)))
    await asyncio.sleep(0.01)
    sink.offer(LogBatch("b", T0, (padded(1, 45_000),)))  # 2 of 1,000 rows, but over half the bytes
    await wait_until(lambda: sink.written == 2, timeout=5)
    assert stream.writes == 1
    await close_within(sink, 2)


def test_a_batch_knows_its_size_in_bytes() -> None:
    batches = [LogBatch("a", T0, tuple(padded(i, 1_000) for i in range(n))) for n in (1, 2, 3)]
    overheads = [batch.nbytes - 1_000 * len(batch.lines) for batch in batches]
    # The lines' bytes, plus an overhead per line and one per batch.
    assert overheads[2] - overheads[1] == overheads[1] - overheads[0] > 0
    assert overheads[0] > overheads[1] - overheads[0]


class StuckStream(io.BytesIO):
    """A stream whose writes block until released, as a full pipe or a hung disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writing = threading.Event()

    def write(self, data: Any, /) -> int:
        self.writing.set()
        self.release.wait(timeout=10)  # bounded, so a failing test cannot hang the run
        return super().write(data)


async def test_a_blocked_stream_never_delays_offer_or_close() -> None:
    stream = StuckStream()
    try:
        sink = StdoutSink(queue_size=1_000, stream=stream)
        await sink.start()
        sink.offer(make_batch("stuck", rows=200))
        await asyncio.to_thread(stream.writing.wait, 5)  # the worker has taken the 200 rows

        batch = make_batch("more")
        started = time.perf_counter()
        for _ in range(10_000):
            sink.offer(batch)
        assert time.perf_counter() - started < 0.5
        assert sink.dropped == 9_000  # 1,000 fit in the queue

        loop = asyncio.get_running_loop()
        started = loop.time()
        await sink.close(started + 0.2)
        assert 0.19 < loop.time() - started < 0.5
        # Nothing was confirmed written: the queue and the write in hand are dropped.
        assert sink.counts() == {"written": 0, "dropped": 10_200, "failed": 0}
    finally:
        stream.release.set()


class FlakyStream(io.BytesIO):
    """A stream whose first write raises ``error``; later ones work."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error: Exception | None = error

    def write(self, data: Any, /) -> int:
        error, self.error = self.error, None
        if error is not None:
            raise error
        return super().write(data)


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), ValueError("write to closed file")])
async def test_a_failed_write_counts_failed_and_the_sink_goes_on(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.sinks")
    stream = FlakyStream(error)
    sink = StdoutSink(queue_size=10, stream=stream)
    await sink.start()
    sink.offer(make_batch("lost", rows=2))
    await wait_until(lambda: sink.failed == 2)
    sink.offer(make_batch("kept"))
    await close_within(sink, 2)
    assert sink.counts() == {"written": 1, "dropped": 0, "failed": 2}
    assert orjson.loads(stream.getvalue())["request_id"] == "kept"
    # One warning when it breaks and one line when it recovers, not one per record.
    assert [r.getMessage().split(" (")[0] for r in caplog.records if r.name == "sidecar.sinks"] == [
        "log sink stdout is failing",
        "log sink stdout recovered",
    ]


# --- file ---------------------------------------------------------------------------------------


async def test_file_sink_appends_valid_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(b'{"earlier":true}\n')
    sink = FileSink(str(path), queue_size=100, max_bytes=0, backups=0)
    await sink.start()
    records = [make_record("a", 0), make_record("a", 1)]
    sink.offer(LogBatch.from_records(records))
    sink.offer(make_batch("b"))
    await close_within(sink, 2)
    logged = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert logged[0] == {"earlier": True}
    assert logged[1:3] == [orjson.loads(orjson.dumps(r.to_log())) for r in records]
    assert logged[3]["request_id"] == "b"
    assert logged[1]["timestamp"] == rfc3339(T0)
    assert sink.counts() == {"written": 3, "dropped": 0, "failed": 0}


@pytest.mark.parametrize(
    ("earlier", "kept"),
    [
        (b'{"earlier":1}\n{"torn', [{"earlier": 1}]),  # a writer killed mid-line
        (b'{"torn":', []),
        (b'{"earlier":1}\n{"whole":2}', [{"earlier": 1}, {"whole": 2}]),  # only the newline missing
        (b'{"long":"' + b"x" * 200_000, []),  # a torn line longer than one block read
    ],
)
async def test_file_sink_starts_on_a_line_of_its_own(tmp_path: Path, earlier: bytes, kept: list[object]) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(earlier)
    sink = FileSink(str(path), queue_size=100, max_bytes=0, backups=0)
    await sink.start()
    sink.offer(make_batch("new"))
    await close_within(sink, 2)
    *logged, last = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert (logged, last["request_id"]) == (kept, "new")


@pytest.mark.parametrize(
    ("max_bytes", "sizes", "kept"),
    [
        (303, [303, 303, 202], range(12, 20)),  # three 101-byte lines fill a file exactly
        (302, [202, 202, 202], range(14, 20)),  # one byte less, and the third line goes to the next file
    ],
)
async def test_file_sink_rotates_at_the_size_bound_keeping_n_backups(
    tmp_path: Path, max_bytes: int, sizes: list[int], kept: range
) -> None:
    path = tmp_path / "predictions.jsonl"
    sink = FileSink(str(path), queue_size=1_000, max_bytes=max_bytes, backups=2)
    await sink.start()
    for i in range(10):  # one write, rotating inside it
        sink.offer(LogBatch(f"r{i}", T0, (padded(i),)))
    await wait_until(lambda: sink.written == 10)
    for i in range(10, 20):  # one write per line
        sink.offer(LogBatch(f"r{i}", T0, (padded(i),)))
        await wait_until(lambda expected=i + 1: sink.written == expected)
    await close_within(sink, 2)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "predictions.jsonl",
        "predictions.jsonl.1",
        "predictions.jsonl.2",
    ]
    files = [tmp_path / "predictions.jsonl.2", tmp_path / "predictions.jsonl.1", path]
    assert [f.stat().st_size for f in files] == sizes
    # The newest lines, oldest file first, none lost or split between files.
    assert [orjson.loads(line)["i"] for f in files for line in f.read_bytes().splitlines()] == list(kept)
    assert sink.counts() == {"written": 20, "dropped": 0, "failed": 0}


async def test_file_sink_without_backups_starts_the_file_over(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(padded(0, 89) + b"\n")  # 90 bytes already there
    sink = FileSink(str(path), queue_size=10, max_bytes=100, backups=0)
    await sink.start()
    sink.offer(LogBatch("r", T0, (padded(1, 49),)))
    await close_within(sink, 2)
    assert path.read_bytes() == padded(1, 49) + b"\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.jsonl"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_a_full_disk_counts_failed() -> None:
    sink = FileSink("/dev/full", queue_size=10, max_bytes=0, backups=0)  # every write fails with ENOSPC
    await sink.start()
    sink.offer(make_batch(rows=2))
    sink.offer(make_batch())
    await close_within(sink, 2)
    assert sink.counts() == {"written": 0, "dropped": 0, "failed": 3}


async def test_a_file_that_cannot_be_opened_stops_start_up(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path / "missing" / "p.jsonl"), queue_size=10, max_bytes=0, backups=0)
    with pytest.raises(SidecarError, match="cannot open log file .*missing/p.jsonl"):
        await sink.start()
    await close_within(sink, 1)


# --- http ---------------------------------------------------------------------------------------


async def test_http_sink_posts_one_binary_cloudevent_per_exchange() -> None:
    receiver = Receiver()
    async with serve(receiver) as base:
        sink = HttpSink(f"{base}/v1/events/?tenant=a", source="ml-sidecar/iris", queue_size=100, timeout=2)
        await sink.start()
        records = [make_record("req-7", 0), make_record("req-7", 1)]
        sink.offer(LogBatch.from_records(records))
        sink.offer(make_batch("req-8"))
        await close_within(sink, 5)

    assert sink.counts() == {"written": 3, "dropped": 0, "failed": 0}
    by_id = {seen.headers["ce-id"]: seen for seen in receiver.seen}
    assert set(by_id) == {"req-7", "req-8"}
    event = by_id["req-7"]
    assert (event.path, event.query) == ("/v1/events/", "tenant=a")  # the trailing slash is kept
    assert {k: v for k, v in event.headers.items() if k.startswith("ce-") or k == "content-type"} == {
        "ce-specversion": "1.0",
        "ce-type": CE_TYPE,
        "ce-source": "ml-sidecar/iris",
        "ce-id": "req-7",
        "ce-time": rfc3339(T0),
        "content-type": "application/json",
    }
    assert orjson.loads(event.body) == [orjson.loads(orjson.dumps(r.to_log())) for r in records]
    assert len(orjson.loads(by_id["req-8"].body)) == 1


async def test_http_sink_retries_with_the_same_event_id() -> None:
    receiver = Receiver(statuses=[503, 429])
    async with serve(receiver) as base:
        sink = HttpSink(base, source="s", queue_size=10, timeout=2, backoff=0.01)
        await sink.start()
        sink.offer(make_batch("req-1", rows=2))
        await close_within(sink, 5)
    assert [seen.headers["ce-id"] for seen in receiver.seen] == ["req-1"] * 3
    assert receiver.seen[0].path == "/"
    assert sink.counts() == {"written": 2, "dropped": 0, "failed": 0}


@pytest.mark.parametrize(("statuses", "attempts"), [([500, 502, 503], 3), ([400], 1)])
async def test_http_sink_counts_failed_when_the_endpoint_refuses(statuses: list[int], attempts: int) -> None:
    receiver = Receiver(statuses=list(statuses))
    async with serve(receiver) as base:
        sink = HttpSink(base, source="s", queue_size=10, timeout=2, backoff=0.01)
        await sink.start()
        sink.offer(make_batch(rows=2))
        await close_within(sink, 5)
    assert len(receiver.seen) == attempts  # a 400 would be refused again: no retry
    assert sink.counts() == {"written": 0, "dropped": 0, "failed": 2}


async def test_dead_http_sink_counts_failed_after_its_retries() -> None:
    with refused_url() as url:
        sink = HttpSink(url, source="s", queue_size=10, timeout=0.5, backoff=0.01)
        await sink.start()
        sink.offer(make_batch("a", rows=2))
        sink.offer(make_batch("b"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sink.close(started + 5)
        assert loop.time() - started < 1
    assert sink.counts() == {"written": 0, "dropped": 0, "failed": 3}


async def test_slow_http_sink_never_delays_offer_and_close_keeps_its_deadline() -> None:
    receiver = Receiver(delay=5.0)
    async with serve(receiver) as base:
        sink = HttpSink(base, source="s", queue_size=1_000, timeout=10, concurrency=2)
        await sink.start()
        sink.offer(make_batch("first"))
        sink.offer(make_batch("second"))
        await wait_until(lambda: len(receiver.seen) == 2)  # both slots now wait on the endpoint

        batch = make_batch("more")
        started = time.perf_counter()
        for _ in range(10_000):
            sink.offer(batch)
        assert time.perf_counter() - started < 0.5
        assert sink.dropped == 9_000  # 1,000 fit in the queue

        loop = asyncio.get_running_loop()
        started = loop.time()
        await sink.close(started + 0.2)
        assert 0.19 < loop.time() - started < 0.5
    # The two in flight and the 1,000 queued were never delivered.
    assert sink.counts() == {"written": 0, "dropped": 10_002, "failed": 0}


# --- privacy, end to end ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hash", "drop"])
async def test_pii_never_reaches_a_sink(tmp_path: Path, mode: PiiMode) -> None:
    anonymizer = Anonymizer(("email", "phone"), mode, salt="0123456789abcdef-test-salt")
    raw = {"email": "ann.secret@example.com", "phone": "+44 7700 900123", "age": 31}
    records = [make_record("req-pii", row, anonymizer.apply(raw)) for row in range(2)]
    batch = LogBatch.from_records(records)

    receiver = Receiver()
    path = tmp_path / "p.jsonl"
    read_fd, write_fd = os.pipe()
    with open(read_fd, "rb") as reader, open(write_fd, "wb") as writer:
        async with serve(receiver) as base:
            sinks: list[Sink] = [
                FileSink(str(path), queue_size=10, max_bytes=0, backups=0),
                HttpSink(base, source="s", queue_size=10, timeout=2),
                StdoutSink(queue_size=10, stream=writer),
            ]
            for sink in sinks:
                await sink.start()
                sink.offer(batch)
            deadline = asyncio.get_running_loop().time() + 5
            await asyncio.gather(*(sink.close(deadline) for sink in sinks))
        writer.close()
        line_outputs = [path.read_bytes(), reader.read()]

    bodies = [seen.body for seen in receiver.seen]
    assert len(bodies) == 1 and all(sink.written == 2 for sink in sinks)
    for output in [*line_outputs, *bodies]:
        assert b"ann.secret" not in output and b"7700" not in output
    logged = [orjson.loads(line) for output in line_outputs for line in output.splitlines()]
    logged += [row for body in bodies for row in orjson.loads(body)]
    expected: dict[str, Any] = {"age": 31}
    if mode == "hash":
        expected |= {"email": anonymizer.pseudonym(raw["email"]), "phone": anonymizer.pseudonym(raw["phone"])}
    assert [row["features"] for row in logged] == [expected] * 6
