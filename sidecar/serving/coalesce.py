"""One ``send()`` per small response instead of two: the response head waits for its body.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body when the app sends it: two system calls
for a response that fits in one packet. On loopback, where a sidecar talks to
its clients, a ``send()`` also runs the receiver's side of TCP in the sender's
time slice, so each costs several µs of the proxy's CPU.

:class:`CoalescingProtocol` is uvicorn's httptools protocol with its transport
wrapped in :class:`HeadHoldingTransport`, which holds back a write that is a
response head (it starts ``HTTP/1.1 `` and is not an interim 1xx) until the
next write, and sends both as one. It never reorders or loses bytes: what is
held goes out before any other write, before ``close()`` and ``write_eof()``,
and at the latest at the end of the event-loop iteration it was written in
(a response without a body, such as a 204 or an answer to HEAD, or a body the
upstream has not sent yet). Everything else the protocol asks of the
transport passes straight through.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingProtocol", "HeadHoldingTransport"]

_HEAD = b"HTTP/1.1 "
_INTERIM = b"HTTP/1.1 1"  # 100 Continue: the client waits for it before it sends the body
# Past this, concatenating would copy more than a second system call costs.
_JOIN_LIMIT = 16 * 1024


class _Holding:
    """The transports of one event loop holding a head, flushed together by one callback per loop iteration.

    One ``call_soon`` per held head, with its handle and bound method, cost
    about 1% of the proxy's CPU; under load one callback serves every head of
    an iteration.
    """

    __slots__ = ("loop", "transports", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transports: list[HeadHoldingTransport] = []

    def flush(self) -> None:
        transports, self.transports = self.transports, []
        for transport in transports:
            if transport._held is not None:  # most went out with their body already
                transport._flush()


# Keyed weakly by loop: a loop that ends takes its (by then empty) list with it.
_HOLDING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Holding] = weakref.WeakKeyDictionary()


class HeadHoldingTransport:
    """A transport that holds a response head back until the next write (see module doc)."""

    __slots__ = (
        "_transport",
        "_holding",
        "_held",
        "is_closing",
        "get_extra_info",
        "pause_reading",
        "resume_reading",
    )

    is_closing: Callable[[], bool]
    get_extra_info: Callable[..., Any]
    pause_reading: Callable[[], None]
    resume_reading: Callable[[], None]

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        holding = _HOLDING.get(loop)
        if holding is None:
            holding = _HOLDING[loop] = _Holding(loop)
        self._holding = holding
        self._held: bytes | None = None
        # What uvicorn calls on every request, bound once: a __getattr__
        # fallback costs a failed lookup per call.
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= _JOIN_LIMIT:
                self._transport.write(held + data)  # bytes + any bytes-like: bytes, one copy
            else:
                self._transport.writelines((held, data))
            return
        if data[:9] == _HEAD and data[:10] != _INTERIM and not self.is_closing():
            # A copy only of what the writer could still change.
            self._held = data if type(data) is bytes else bytes(data)
            # The body usually follows within this same callback; if not, the
            # head goes out once the loop has run what is ready now.
            holding = self._holding
            if not holding.transports:
                holding.loop.call_soon(holding.flush)
            holding.transports.append(self)
            return
        self._transport.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            # A connection the client has dropped meanwhile takes no more writes.
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, data: Any) -> None:
        self._flush()
        self._transport.writelines(data)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (0 if self._held is None else len(self._held))

    def __getattr__(self, name: str) -> Any:
        # Whatever else a protocol may ask for is the real transport's.
        return getattr(self._transport, name)


class CoalescingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`HeadHoldingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadHoldingTransport(transport, self.loop))  # type: ignore[arg-type]
