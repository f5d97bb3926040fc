"""Header rewriting for a transparent reverse proxy (RFC 9110 §7.6.1).

Hop-by-hop headers describe one connection, not the message, so they are
removed in both directions, together with any header that ``Connection``
names. End-to-end headers pass unchanged, in order, duplicates kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence

__all__ = ["HOP_BY_HOP", "REQUEST_ID", "upstream_headers", "client_headers", "new_request_id"]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)  # plus every ``proxy-*`` header, checked by prefix
REQUEST_ID = b"x-request-id"


class _RandomBytes:
    """os.urandom() read 4 KiB at a time: one system call per 256 request ids instead of one each."""

    __slots__ = ("buffer", "position")

    def __init__(self) -> None:
        self.buffer = b""
        self.position = 0

    def take(self, n: int) -> bytes:
        position = self.position
        if position + n > len(self.buffer):
            self.buffer = os.urandom(4096)
            position = 0
        self.position = position + n
        return self.buffer[position : position + n]

    def reset(self) -> None:
        # A forked child must not hand out the ids its parent still will.
        self.buffer = b""
        self.position = 0


_RANDOM = _RandomBytes()
os.register_at_fork(after_in_child=_RANDOM.reset)


def new_request_id() -> str:
    """32 hex digits: the time in milliseconds (48 bits), then 80 random bits, as in a UUIDv7.

    Time first, so ids sort by arrival: logs and the prediction store's index
    read in time order, and the index grows at its end rather than at random
    places. 80 random bits per millisecond leave collisions out of reach, at a
    fifth of the cost of uuid4.
    """
    millis = (time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF
    return millis.to_bytes(6, "big").hex() + _RANDOM.take(10).hex()


def _connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


# What upstream_headers() does with a request header, by name. Names not in
# the table are forwarded unless they are ``proxy-*``: one dict lookup per
# header instead of a chain of comparisons, since this runs for every header
# of every request.
_DROP, _CONNECTION, _HOST, _FORWARDED_FOR, _ID, _PROTO, _FORWARDED_HOST = range(7)
_REQUEST_ACTIONS: dict[bytes, int] = {
    **dict.fromkeys(HOP_BY_HOP, _DROP),
    # The ASGI server already answered "100 Continue" when the body was read.
    b"expect": _DROP,
    b"connection": _CONNECTION,
    b"host": _HOST,
    b"x-forwarded-for": _FORWARDED_FOR,
    REQUEST_ID: _ID,
    b"x-forwarded-proto": _PROTO,
    b"x-forwarded-host": _FORWARDED_HOST,
}


def upstream_headers(
    headers: Iterable[tuple[bytes, bytes]], client: tuple[str, int] | None, scheme: str
) -> tuple[list[tuple[str, str]], str, bool]:
    """Headers to send upstream, the request id, and whether the client sent it.

    ``headers`` are ASGI request headers (lower-case names). ``Host`` is left
    for the client library to set to the upstream's authority; the original
    goes to ``X-Forwarded-Host``. ``X-Forwarded-For`` gains the client address.
    ``X-Forwarded-Proto`` and ``-Host`` are kept when an ingress in front
    already set them, since it saw the original request.
    """
    out: list[tuple[str, str]] = []
    request_id = ""
    host = ""
    forwarded_for = ""
    has_proto = has_host = False
    named: set[bytes] | None = None
    actions = _REQUEST_ACTIONS
    for name, value in headers:
        action = actions.get(name)
        if action is None:
            if not name.startswith(b"proxy-"):
                out.append((name.decode("latin-1"), value.decode("latin-1")))
        elif action == _DROP:
            continue
        elif action == _CONNECTION:
            named = _connection_tokens(value) if named is None else named | _connection_tokens(value)
        elif action == _HOST:
            host = value.decode("latin-1")
        elif action == _FORWARDED_FOR:
            v = value.decode("latin-1")
            forwarded_for = f"{forwarded_for}, {v}" if forwarded_for else v
        else:
            if action == _ID:
                request_id = value.decode("latin-1")
            elif action == _PROTO:
                has_proto = True
            else:
                has_host = True
            out.append((name.decode("latin-1"), value.decode("latin-1")))
    if named and not named <= HOP_BY_HOP:
        # As in client_headers(), "Connection: keep-alive" needs no second pass.
        out = [(k, v) for k, v in out if k.encode("latin-1") not in named]
    client_sent_id = bool(request_id)
    if not client_sent_id:
        request_id = new_request_id()
        out.append(("x-request-id", request_id))
    if client is not None:
        forwarded_for = f"{forwarded_for}, {client[0]}" if forwarded_for else client[0]
    if forwarded_for:
        out.append(("x-forwarded-for", forwarded_for))
    if not has_proto:
        out.append(("x-forwarded-proto", scheme))
    if not has_host and host:
        out.append(("x-forwarded-host", host))
    return out, request_id, client_sent_id


# Response header names client_headers() must look at; any other name is
# copied unless it is ``proxy-*``.
_RESPONSE_SPECIAL = HOP_BY_HOP | {REQUEST_ID}


def client_headers(raw: Sequence[tuple[bytes, bytes]], request_id: str) -> list[tuple[bytes, bytes]]:
    """Response headers for the client: the upstream's, less hop-by-hop ones.

    ``x-request-id`` is added when the upstream did not echo one, so the
    client can always quote the id that the prediction logs carry.
    """
    out: list[tuple[bytes, bytes]] = []
    named: set[bytes] | None = None
    has_id = False
    special = _RESPONSE_SPECIAL
    for name, value in raw:
        lower = name.lower()
        if lower not in special:
            if not lower.startswith(b"proxy-"):
                out.append((lower, value))
        elif lower == REQUEST_ID:
            has_id = True
            out.append((lower, value))
        elif lower == b"connection":
            named = _connection_tokens(value) if named is None else named | _connection_tokens(value)
    if named and not named <= HOP_BY_HOP:
        # Most upstreams send "Connection: keep-alive", which names only a
        # header already dropped: skip the second pass then.
        out = [(k, v) for k, v in out if k not in named]
    if not has_id:
        out.append((REQUEST_ID, request_id.encode("latin-1")))
    return out
