"""Header rewriting for a transparent reverse proxy (RFC 9110 §7.6.1).

Hop-by-hop headers describe one connection, not the message, so they are
removed in both directions, together with any header that ``Connection``
names. End-to-end headers pass unchanged, in order, duplicates kept.

Both directions stay in bytes, as ASGI and the wire carry them: the request
headers become the upstream request's header lines in one pass, with no
decoding and re-encoding of every name and value.
"""

from __future__ import annotations

import os
from binascii import hexlify
from collections.abc import Iterable, Sequence
from time import time, time_ns

__all__ = ["HOP_BY_HOP", "REQUEST_ID", "upstream_headers", "client_headers", "new_request_id"]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)  # plus every ``proxy-*`` header, checked by prefix
REQUEST_ID = b"x-request-id"

# Header names seen at run time are remembered, so that each later header
# costs one dict lookup. Names come from clients and the upstream, so the
# tables stop growing here; a name not kept is still handled, only slower.
_LEARN_LIMIT = 1024
# Random bytes read per system call: 409 request ids' worth, 10 bytes (80 bits) each.
_RANDOM_BYTES = 4090
_ID_RANDOM_BYTES = 10


class _RequestIds:
    """Request ids as hex bytes: the millisecond prefix made once per millisecond, random hex from a 4 KiB read."""

    __slots__ = ("millis", "prefix", "randoms")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # Also after a fork: a child must not hand out the ids its parent still will.
        self.millis = -1.0
        self.prefix = b""
        self.randoms: list[bytes] = []

    def next(self, millis: float) -> bytes:
        """The id of a request that arrived at ``millis``, Unix time in whole milliseconds."""
        if millis != self.millis:
            self.millis = millis
            self.prefix = b"%012x" % (int(millis) & 0xFFFF_FFFF_FFFF)
        randoms = self.randoms
        if not randoms:
            # Hex with a space every 10 bytes, split: each id's 20 hex digits cut in C, once per read.
            randoms += hexlify(os.urandom(_RANDOM_BYTES), b" ", _ID_RANDOM_BYTES).split()
        return self.prefix + randoms.pop()


_IDS = _RequestIds()
os.register_at_fork(after_in_child=_IDS.reset)
_new_id = _IDS.next


def new_request_id() -> str:
    """32 hex digits: the time in milliseconds (48 bits), then 80 random bits, as in a UUIDv7.

    Time first, so ids sort by arrival: logs and the prediction store's index
    read in time order, and the index grows at its end rather than at random
    places. 80 random bits per millisecond leave collisions out of reach, at a
    fifth of the cost of uuid4.
    """
    return _new_id(time_ns() // 1_000_000).decode("ascii")


def _connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


# What upstream_headers() does with a request header, by name: one dict
# lookup per header instead of a chain of comparisons. _FORWARD is 0, so the
# common case is one truth test.
_FORWARD, _DROP, _CONNECTION, _HOST, _FORWARDED_FOR, _LENGTH, _ID, _PROTO, _FORWARDED_HOST = range(9)
_REQUEST_ACTIONS: dict[bytes, int] = {
    **dict.fromkeys(HOP_BY_HOP, _DROP),
    # The ASGI server already answered "100 Continue" when the body was read.
    b"expect": _DROP,
    b"connection": _CONNECTION,
    b"host": _HOST,
    b"x-forwarded-for": _FORWARDED_FOR,
    # Framing is the upstream client's: it sends the length of what it sends.
    b"content-length": _LENGTH,
    REQUEST_ID: _ID,
    b"x-forwarded-proto": _PROTO,
    b"x-forwarded-host": _FORWARDED_HOST,
}
_BUILTIN_ACTIONS = len(_REQUEST_ACTIONS)
# The X-Forwarded-Proto line for each scheme an HTTP server gives, made once.
_PROTO_LINES = {scheme: b"x-forwarded-proto: %b\r\n" % scheme.encode() for scheme in ("http", "https")}


def _request_action(name: bytes) -> int:
    action = _DROP if name.startswith(b"proxy-") else _FORWARD
    if len(_REQUEST_ACTIONS) < _BUILTIN_ACTIONS + _LEARN_LIMIT:
        _REQUEST_ACTIONS[name] = action
    return action


def upstream_headers(
    headers: Iterable[tuple[bytes, bytes]], client: tuple[str, int] | None, scheme: str, now: float | None = None
) -> tuple[bytes, int, bytes, bool, bytes | None]:
    """Header lines for the upstream, their number, the request id, whether the client sent it, its Content-Length.

    ``headers`` are ASGI request headers (lower-case names). The lines are
    ``name: value\\r\\n`` each, for :meth:`UpstreamClient.forward`, without
    ``Host`` and ``Content-Length``, which the client library frames itself:
    ``Host`` becomes the upstream's authority and the original goes to
    ``X-Forwarded-Host``. ``X-Forwarded-For`` gains the client address.
    ``X-Forwarded-Proto`` and ``-Host`` are kept when an ingress in front
    already set them, since it saw the original request. ``now``, the request's
    arrival (Unix time, as the proxy read it anyway), dates a request id made
    here; without it the clock is read.
    """
    parts: list[bytes] = []
    request_id = b""
    host = forwarded_for = length = None
    has_proto = has_host = False
    named: set[bytes] | None = None
    actions = _REQUEST_ACTIONS
    for name, value in headers:
        action = actions.get(name)
        if action is None:
            action = _request_action(name)
        if not action:
            parts += (name, b": ", value, b"\r\n")
        elif action == _LENGTH:
            length = value
        elif action == _HOST:
            host = value
        elif action == _DROP:
            continue
        elif action == _CONNECTION:
            named = _connection_tokens(value) if named is None else named | _connection_tokens(value)
        elif action == _FORWARDED_FOR:
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        else:
            if action == _ID:
                request_id = value
            elif action == _PROTO:
                has_proto = True
            else:
                has_host = True
            parts += (name, b": ", value, b"\r\n")
    if named and not named <= HOP_BY_HOP:
        # As in client_headers(), "Connection: keep-alive" needs no second pass.
        parts = [part for i in range(0, len(parts), 4) if parts[i] not in named for part in parts[i : i + 4]]
    # The lines added below go in whole, not as four parts each: nothing filters them.
    count = len(parts) >> 2
    client_sent_id = request_id != b""
    if not client_sent_id:
        # Floored as a float: int() only when the millisecond changes.
        request_id = _new_id((time() if now is None else now) * 1000 // 1)
        parts += (b"x-request-id: ", request_id, b"\r\n")
        count += 1
    if client is not None:
        address = client[0].encode("latin-1")
        forwarded_for = address if forwarded_for is None else forwarded_for + b", " + address
    if forwarded_for is not None:
        parts += (b"x-forwarded-for: ", forwarded_for, b"\r\n")
        count += 1
    if not has_proto:
        parts.append(_PROTO_LINES.get(scheme) or b"x-forwarded-proto: %b\r\n" % scheme.encode("latin-1"))
        count += 1
    if not has_host and host:
        parts += (b"x-forwarded-host: ", host, b"\r\n")
        count += 1
    return b"".join(parts), count, request_id, client_sent_id, length


# Response header names as the upstream spells them, mapped to the lower-case
# name the client gets, for the names passed on unchanged. The hop-by-hop
# ones, Connection and X-Request-Id are never in it: they take the slow path.
_RESPONSE_NAMES: dict[bytes, bytes] = {}
# Connection values that name no other header: no token parsing for them.
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"Keep-Alive", b"close", b"Close"})


def client_headers(raw: Sequence[tuple[bytes, bytes]], request_id: bytes) -> list[tuple[bytes, bytes]]:
    """Response headers for the client: the upstream's, less hop-by-hop ones, names in lower case.

    ``x-request-id`` is added when the upstream did not echo one, so the
    client can always quote the id that the prediction logs carry.
    """
    out: list[tuple[bytes, bytes]] = []
    named: set[bytes] | None = None
    has_id = False
    names = _RESPONSE_NAMES
    for name, value in raw:
        lower = names.get(name)
        if lower is not None:
            out.append((lower, value))
            continue
        lower = name.lower()
        if lower == b"connection":
            if value not in _PLAIN_CONNECTION:
                named = _connection_tokens(value) if named is None else named | _connection_tokens(value)
        elif lower == REQUEST_ID:
            has_id = True
            out.append((lower, value))
        elif lower not in HOP_BY_HOP and not lower.startswith(b"proxy-"):
            if len(names) < _LEARN_LIMIT:
                names[name] = lower
            out.append((lower, value))
    if named and not named <= HOP_BY_HOP:
        out = [(k, v) for k, v in out if k not in named]
    if not has_id:
        out.append((REQUEST_ID, request_id))
    return out
