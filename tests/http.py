"""A raw HTTP/1.1 client for tests that must see the exact bytes on the wire."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # de-chunked

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


async def raw_request(
    port: int, method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> RawResponse:
    """Send one request with ``Connection: close`` and read the whole response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"host: 127.0.0.1:{port}", "connection: close"]
        lines += [f"{k}: {v}" for k, v in headers or []]
        if body or method in ("POST", "PUT"):
            lines.append(f"content-length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    return parse_response(data)


async def post_in_parts(
    port: int, target: str, parts: list[bytes], headers: list[tuple[str, str]] | None = None
) -> RawResponse:
    """POST a body in ``parts`` with ``Connection: close``, pausing 0.1 s between them.

    The server's first body message then holds only the first part: the proxy sees a streamed body.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {target} HTTP/1.1", f"host: 127.0.0.1:{port}", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    lines.append(f"content-length: {sum(map(len, parts))}")
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + parts[0])
        for part in parts[1:]:
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(part)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    return parse_response(data)


def parse_response(data: bytes) -> RawResponse:
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in header_lines)]
    if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers):
        rest = _dechunk(rest)
    return RawResponse(int(status_line.split()[1]), headers, rest)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]


async def scrape(port: int) -> dict[str, float]:
    """``/metrics`` from the admin port as {'name{label="v",...}': value}, labels sorted."""
    from prometheus_client.parser import text_string_to_metric_families

    response = await raw_request(port, "GET", "/metrics")
    assert response.status == 200, response
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples
