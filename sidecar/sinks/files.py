"""JSON-lines sinks whose writes block: standard output and a size-rotated file.

Writes run in a thread of the sink's own, so the event loop never waits on
a disk or a pipe. Once a batch arrives, the worker lets more gather for up
to 50 ms (less when the queue is half full or the sink is closing), then
writes them all at once: under load, one thread hop and one write per 50 ms
rather than per exchange, for lines that reach the file up to 50 ms later.
A write already running at the shutdown deadline is counted ``dropped``
even if the thread finishes it later: a blocked disk cannot be interrupted,
and shutdown does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from io import BufferedWriter
from typing import BinaryIO, Literal

import orjson

from sidecar.exceptions import SidecarError
from sidecar.sinks.base import DEFAULT_QUEUE_MAX_BYTES, Sink
from sidecar.threads import lower_priority

__all__ = ["StdoutSink", "FileSink"]

logger = logging.getLogger("sidecar.sinks")

# How long the first batch of a write waits for others. Each write costs a hop to the
# sink's thread and back, and the thread's GIL hand-offs slow the event loop.
_GATHER_SECONDS = 0.05


class _ThreadedSink(Sink):
    """A sink that writes in a single thread of its own.

    One thread keeps writes in order without locks, and a stuck disk cannot
    starve the loop's default executor, which DNS lookups also use.
    """

    def __init__(self, *, queue_size: int, queue_max_bytes: int) -> None:
        super().__init__(queue_size=queue_size, queue_max_bytes=queue_max_bytes)
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"log-sink-{self.name}", initializer=lower_priority
        )

    @abstractmethod
    def _write_blocking(self, lines: list[bytes]) -> tuple[int, OSError | None]:
        """Write whole lines; return how many were written and the error that stopped the rest."""

    @abstractmethod
    def _close_blocking(self) -> None: ...

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while await self._next():
            await self._gather(_GATHER_SECONDS)
            # Everything queued goes in one write: fewer thread hops and syscalls under load.
            lines: list[bytes] = []
            while self._queue:
                lines += self._take().lines
            error: Exception | None
            try:
                written, error = await loop.run_in_executor(self._executor, self._write_blocking, lines)
            except asyncio.CancelledError:
                self.dropped += len(lines)
                raise
            except Exception as exc:  # e.g. a stream closed under us: the rows still count, the sink goes on
                written, error = 0, exc
            self.written += written
            self.failed += len(lines) - written
            self._report(None if error is None else str(error))

    async def _release(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        # Queued behind any write still running, so the file is closed after it, however late.
        closing = loop.run_in_executor(self._executor, self._close_blocking)
        await asyncio.wait([closing], timeout=max(0.0, deadline - loop.time()))
        self._executor.shutdown(wait=False)


class StdoutSink(_ThreadedSink):
    """JSON lines on standard output, or on another binary stream.

    Usage::

        sink = StdoutSink(queue_size=10_000)  # writes to sys.stdout.buffer
    """

    name = "stdout"

    def __init__(
        self, *, queue_size: int, queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES, stream: BinaryIO | None = None
    ) -> None:
        super().__init__(queue_size=queue_size, queue_max_bytes=queue_max_bytes)
        self._stream = sys.stdout.buffer if stream is None else stream

    def _write_blocking(self, lines: list[bytes]) -> tuple[int, OSError | None]:
        try:
            self._stream.write(b"".join(line + b"\n" for line in lines))
            self._stream.flush()
        except OSError as exc:
            return 0, exc
        return len(lines), None

    def _close_blocking(self) -> None:
        # The stream belongs to the process, and every write was flushed.
        pass


class FileSink(_ThreadedSink):
    """JSON lines appended to a file, rotated by size as ``logging.handlers.RotatingFileHandler`` does.

    When the next line would take the file past ``max_bytes``, ``path.N-1``
    becomes ``path.N`` … ``path`` becomes ``path.1`` (the oldest backup is
    replaced), and a new ``path`` begins. A file never exceeds ``max_bytes``
    unless one line alone is longer, which then has a file to itself.
    ``max_bytes=0`` never rotates; ``backups=0`` empties the file instead.
    Lines are whole: after a failed write the file is cut back to its last
    complete line, and the next write reopens it. At start, half a line left
    by a writer that was killed mid-write (a monitoring process restarted
    after SIGKILL, say) is cut off too, so that the first new line does not
    end up glued to it, both unreadable.

    Usage::

        sink = FileSink("/var/log/predictions.jsonl", queue_size=10_000, max_bytes=100 << 20, backups=5)
    """

    name = "file"

    def __init__(
        self,
        path: str,
        *,
        queue_size: int,
        max_bytes: int,
        backups: int,
        queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
    ) -> None:
        super().__init__(queue_size=queue_size, queue_max_bytes=queue_max_bytes)
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._file: BufferedWriter | None = None
        self._size = 0  # bytes of complete lines in the current file

    async def start(self) -> None:
        """Open the file first, so that a wrong path stops start-up instead of failing every record."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open_whole)
        except OSError as exc:
            raise SidecarError(f"SIDECAR_LOG_SINK: cannot open log file {self.path}: {exc.strerror}") from exc
        await super().start()

    def _open_whole(self) -> None:
        file = self._open("ab")
        tail = _last_line(self.path, self._size)
        if not tail:
            return
        try:
            orjson.loads(tail)
        except orjson.JSONDecodeError:
            os.truncate(self.path, self._size - len(tail))
            self._size -= len(tail)
            logger.warning("cut %d bytes of a half-written last line off %s", len(tail), self.path)
        else:  # a whole line that only lacks its newline, perhaps from another tool: keep it
            file.write(b"\n")
            file.flush()
            self._size += 1

    def _open(self, mode: Literal["ab", "wb"]) -> BufferedWriter:
        file = open(self.path, mode)  # closed in _rotate, _discard or _close_blocking
        self._file = file
        self._size = file.tell()  # append mode starts at the end
        return file

    def _write_blocking(self, lines: list[bytes]) -> tuple[int, OSError | None]:
        written = 0
        chunk = bytearray()
        try:
            file = self._file or self._open("ab")
            for line in lines:
                pending = self._size + len(chunk)
                if self._max_bytes and pending and pending + len(line) + 1 > self._max_bytes:
                    written += self._append(file, chunk)
                    file = self._rotate(file)
                chunk += line
                chunk += b"\n"
            written += self._append(file, chunk)
        except OSError as exc:
            return written, exc
        return written, None

    def _append(self, file: BufferedWriter, chunk: bytearray) -> int:
        """Write and flush whole lines; return how many."""
        try:
            file.write(chunk)
            file.flush()
        except OSError:
            self._discard()
            raise
        self._size += len(chunk)
        lines = chunk.count(b"\n")
        chunk.clear()
        return lines

    def _rotate(self, file: BufferedWriter) -> BufferedWriter:
        self._file = None  # first, so that a failed close never leaves a closed file to write to
        file.close()
        if self._backups == 0:
            return self._open("wb")
        for index in range(self._backups - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        return self._open("ab")

    def _discard(self) -> None:
        # A failed write may have left half a line behind: cut back to the last whole one.
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(OSError):
            os.truncate(self.path, self._size)

    def _close_blocking(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()


def _last_line(path: str, size: int) -> bytes:
    """What follows the last newline in the first ``size`` bytes of ``path``."""
    with open(path, "rb") as file:
        # Read backwards in blocks: the line may be longer than one block, the file much longer still.
        end = size
        while end > 0:
            start = max(0, end - 65536)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                start += newline + 1
                break
            end = start
        else:
            start = 0
        file.seek(start)
        return file.read(size - start)
