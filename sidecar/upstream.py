"""The one HTTP client of the sidecar, wrapped so that it can be swapped.

aiohttp was chosen by measurement (README, "Design notes"; ``benchmarks/``):
its ``ClientSession`` serves about 20x the requests per second of httpx's own
pool on two cores. Every outgoing call (the proxied request, the readiness
probe, and later sinks and webhooks) goes through one :class:`UpstreamClient`,
so the project carries one HTTP stack. Nothing outside this module imports
aiohttp, and all of its errors are mapped to :mod:`sidecar.exceptions` by
one function, ``_mapped`` (also offered as the :func:`map_errors` context
manager).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType

import aiohttp
from yarl import URL

from sidecar.exceptions import UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout

__all__ = ["UpstreamClient", "UpstreamResponse", "map_errors"]

Body = bytes | AsyncIterable[bytes] | None


def _mapped(exc: TimeoutError | aiohttp.ClientError) -> UpstreamError:
    """The :class:`UpstreamError` for one of the client library's exceptions.

    The single place that decides between 502 and 504, as httpx maps its
    backend's errors in one place.
    """
    if isinstance(exc, TimeoutError):
        # Covers connect and read timeouts alike: aiohttp's timeout errors
        # derive from the built-in TimeoutError.
        return UpstreamTimeout(str(exc) or "upstream timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(str(exc))
    return UpstreamProtocolError(str(exc) or type(exc).__name__)


# What _mapped() accepts. The hot path catches these with a plain try/except
# rather than through map_errors(): a generator-based context manager costs
# about a tenth of the sidecar's CPU per request when entered three times.
_CLIENT_ERRORS = (TimeoutError, aiohttp.ClientError)


@contextmanager
def map_errors() -> Iterator[None]:
    """Turn the client library's exceptions into :class:`UpstreamError` subclasses."""
    try:
        yield
    except _CLIENT_ERRORS as exc:
        raise _mapped(exc) from exc


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
        try:
            return await self._response.read()
        except _CLIENT_ERRORS as exc:
            raise _mapped(exc) from exc

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Yield body bytes as they arrive, so streamed responses stay streamed."""
        content = self._response.content
        while True:
            try:
                chunk = await content.readany()
            except _CLIENT_ERRORS as exc:
                raise _mapped(exc) from exc
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

    def request(
        self,
        method: str,
        target: str | URL,
        headers: Sequence[tuple[str, str]],
        body: Body = None,
        *,
        timeout: float | None = None,
    ) -> _Request:
        """Send a request; ``async with`` it to get the response once its headers have arrived.

        ``target`` is a raw path with query string, or a prepared :meth:`url`.
        The response is released back to the pool when the block ends, or its
        connection closed if the block raised, since a body that was not read
        to the end cannot be reused on a keep-alive connection.
        """
        session = self._session
        if session is None:
            raise RuntimeError("UpstreamClient.open() was not awaited")
        url = target if isinstance(target, URL) else self.url(target)
        client_timeout = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        return _Request(session, method, url, headers, body, client_timeout)


class _Request:
    """The context manager :meth:`UpstreamClient.request` returns.

    A class rather than ``@asynccontextmanager``: on the request path the
    generator machinery cost more than everything else in this module.
    """

    __slots__ = ("_session", "_method", "_url", "_headers", "_body", "_timeout", "_response")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: Sequence[tuple[str, str]],
        body: Body,
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self._session = session
        self._method = method
        self._url = url
        self._headers = headers
        self._body = body
        self._timeout = timeout
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        try:
            response = await self._session.request(
                self._method,
                self._url,
                headers=self._headers,
                data=self._body,
                allow_redirects=False,
                compress=None,
                timeout=self._timeout,
            )
        except _CLIENT_ERRORS as exc:
            raise _mapped(exc) from exc
        self._response = response
        return UpstreamResponse(response)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        response = self._response
        if response is None:
            return
        if exc_type is None:
            response.release()
        else:
            # An unfinished body cannot be reused on a keep-alive connection.
            response.close()
