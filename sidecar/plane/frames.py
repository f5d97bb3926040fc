"""Length-prefixed frames between the serving process and its monitoring process.

A frame is a 4-byte big-endian length and a pickle (protocol 5). Pickle is
safe here because both ends are this program and the channel is a private
``socketpair`` created by the serving process before the monitoring process
starts: no other peer can write to it. Payload bytes from clients travel as
``bytes`` values inside the pickle, never as pickle opcodes.

The messages are tuples whose first item names them (the constants below).
Two channels carry them, so that a backlog of exchanges never delays a
scrape or a label post: ``data`` carries only :data:`EXCHANGES`,
:data:`MIRRORS` and :data:`END`; ``control`` carries everything else, both ways.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

__all__ = [
    "CALL",
    "END",
    "EXCHANGES",
    "FAILED",
    "FLAG",
    "MAX_FRAME_BYTES",
    "MIRRORS",
    "PROGRESS",
    "READY",
    "REPLY",
    "SERVING",
    "SHADOW",
    "TRIGGER",
    "encode",
    "read_frame",
]

# serving -> monitoring, data channel
EXCHANGES = "exchanges"  # (EXCHANGES, list[Exchange])
MIRRORS = "mirrors"  # (MIRRORS, list[MirrorRequest]): shadow mode's mirrors, for the monitoring process to send
END = "end"  # (END,): nothing more will come; drain and exit
# serving -> monitoring, control channel
SERVING = "serving"  # (SERVING, ServingState): the Layer-1 counters, flags and capture drops, every second
CALL = "call"  # (CALL, id, kind, payload): an admin request or a scrape, answered by REPLY
# monitoring -> serving, control channel
READY = "ready"  # (READY,): started; exchanges and calls may flow
FAILED = "failed"  # (FAILED, message): could not start (a bad file, an unusable state dir)
REPLY = "reply"  # (REPLY, id, payload)
FLAG = "flag"  # (FLAG, name, value, source, reason): an alert hook sets a runtime flag
TRIGGER = "trigger"  # (TRIGGER, reason, hold_seconds): an alert arms trigger-based capture
PROGRESS = "progress"  # (PROGRESS, processed, status): exchanges processed so far, and the monitoring status
SHADOW = "shadow"  # (SHADOW, outcomes): the mirrors it was handed, by outcome so far, every second (shadow mode)

_HEADER = struct.Struct("!I")
# A batch is at most 1 MiB of payload (the sender's bound) plus its framing; anything
# far larger is a bug on the other side, not something to allocate for.
MAX_FRAME_BYTES = 64 << 20


def encode(message: tuple[Any, ...]) -> bytes:
    """One frame: the length, then the pickled message."""
    payload = pickle.dumps(message, protocol=5)
    return _HEADER.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None at the end of the stream (the other process closed it or died)."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME_BYTES:
            raise ValueError(f"a frame of {size} bytes is larger than {MAX_FRAME_BYTES}")
        payload = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message: tuple[Any, ...] = pickle.loads(payload)
    return message
