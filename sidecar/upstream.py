"""The one HTTP client of the sidecar, wrapped so that it can be swapped.

aiohttp was chosen by measurement (README, "Design notes"; ``benchmarks/``):
its ``ClientSession`` serves about 20x the requests per second of httpx's own
pool on two cores. Every outgoing call (the proxied request, the readiness
probe, and later sinks and webhooks) goes through one :class:`UpstreamClient`,
so the project carries one HTTP stack. Nothing outside this module imports
aiohttp, and all of its errors are mapped to :mod:`sidecar.exceptions` in
:func:`map_errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import aiohttp
from yarl import URL

from sidecar.exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout

__all__ = ["UpstreamClient", "UpstreamResponse", "map_errors"]

Body = bytes | AsyncIterable[bytes] | None


@contextmanager
def map_errors() -> Iterator[None]:
    """Turn the client library's exceptions into :class:`UpstreamError` subclasses.

    The single place that decides between 502 and 504, as httpx maps its
    backend's errors in one context manager.
    """
    try:
        yield
    except TimeoutError as exc:
        # Covers connect and read timeouts alike: aiohttp's timeout errors
        # derive from the built-in TimeoutError.
        raise UpstreamTimeout(str(exc) or "upstream timed out") from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamConnectError(str(exc)) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamProtocolError(str(exc) or type(exc).__name__) from exc


class UpstreamResponse:
    """A response whose body has not been read yet."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def raw_headers(self) -> Sequence[tuple[bytes, bytes]]:
        # Original names and values as bytes, in order, duplicates kept.
        return self._response.raw_headers

    @property
    def content_length(self) -> int | None:
        return self._response.content_length

    async def read(self) -> bytes:
        with map_errors():
            return await self._response.read()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Yield body bytes as they arrive, so streamed responses stay streamed."""
        content = self._response.content
        while True:
            with map_errors():
                chunk = await content.readany()
            if not chunk:
                return
            yield chunk


class UpstreamClient:
    """A pooled keep-alive client for one base URL.

    Usage::

        client = UpstreamClient("http://127.0.0.1:8080", timeout=30, connect_timeout=5, max_connections=256)
        await client.open()
        async with client.request("GET", "/v2/health/ready", []) as response:
            body = await response.read()
        await client.close()
    """

    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float, max_connections: int) -> None:
        self.base_url = base_url.rstrip("/")
        # sock_read bounds the silence before the response headers and between
        # body chunks (nginx's proxy_read_timeout); a total deadline would cut
        # off long server-sent-event streams that are healthy.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            # Transparency: no cookies kept, no bodies decoded, and none of the
            # headers the client did not send (User-Agent, Accept, ...).
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, target: str) -> URL:
        """The absolute URL for a raw path and query, with its percent-encoding kept byte for byte."""
        return URL(self.base_url + target, encoded=True)

    @asynccontextmanager
    async def request(
        self,
        method: str,
        target: str | URL,
        headers: Sequence[tuple[str, str]],
        body: Body = None,
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[UpstreamResponse]:
        """Send a request and yield the response once its headers have arrived.

        ``target`` is a raw path with query string, or a prepared :meth:`url`.
        The response is released back to the pool when the block ends, or its
        connection closed if the body was not read to the end.
        """
        session = self._session
        if session is None:
            raise RuntimeError("UpstreamClient.open() was not awaited")
        url = target if isinstance(target, URL) else self.url(target)
        client_timeout = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        with map_errors():
            response = await session.request(
                method, url, headers=headers, data=body, allow_redirects=False, compress=None, timeout=client_timeout
            )
        try:
            yield UpstreamResponse(response)
        except (asyncio.CancelledError, Exception):
            # An unfinished body cannot be reused on a keep-alive connection.
            response.close()
            raise
        else:
            response.release()
