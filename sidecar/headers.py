"""Header rewriting for a transparent reverse proxy (RFC 9110 §7.6.1).

Hop-by-hop headers describe one connection, not the message, so they are
removed in both directions, together with any header that ``Connection``
names. End-to-end headers pass unchanged, in order, duplicates kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

__all__ = ["HOP_BY_HOP", "REQUEST_ID", "upstream_headers", "client_headers", "new_request_id"]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)  # plus every ``proxy-*`` header, checked by prefix
REQUEST_ID = b"x-request-id"


def new_request_id() -> str:
    # 128 random bits as hex: as unique as a UUID4, at a fifth of the cost.
    return os.urandom(16).hex()


def _is_hop_by_hop(name: bytes) -> bool:
    return name in HOP_BY_HOP or name.startswith(b"proxy-")


def _connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


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
    named: set[bytes] = set()
    for name, value in headers:
        if _is_hop_by_hop(name):
            if name == b"connection":
                named |= _connection_tokens(value)
            continue
        if name == b"host":
            host = value.decode("latin-1")
            continue
        if name == b"expect":
            # The ASGI server already answered "100 Continue" when the body was read.
            continue
        if name == b"x-forwarded-for":
            v = value.decode("latin-1")
            forwarded_for = f"{forwarded_for}, {v}" if forwarded_for else v
            continue
        if name == REQUEST_ID:
            request_id = value.decode("latin-1")
        elif name == b"x-forwarded-proto":
            has_proto = True
        elif name == b"x-forwarded-host":
            has_host = True
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    if named:
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


def client_headers(raw: Sequence[tuple[bytes, bytes]], request_id: str) -> list[tuple[bytes, bytes]]:
    """Response headers for the client: the upstream's, less hop-by-hop ones.

    ``x-request-id`` is added when the upstream did not echo one, so the
    client can always quote the id that the prediction logs carry.
    """
    out: list[tuple[bytes, bytes]] = []
    named: set[bytes] = set()
    has_id = False
    for name, value in raw:
        lower = name.lower()
        if _is_hop_by_hop(lower):
            if lower == b"connection":
                named |= _connection_tokens(value)
            continue
        if lower == REQUEST_ID:
            has_id = True
        out.append((lower, value))
    if named:
        out = [(k, v) for k, v in out if k not in named]
    if not has_id:
        out.append((REQUEST_ID, request_id.encode("latin-1")))
    return out
