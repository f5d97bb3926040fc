"""Reliable delivery of one POST: bounded attempts with exponential backoff and full jitter.

Every outgoing notification (CloudEvents log sink, retraining webhook, and
later alert webhooks) has the same needs: a timeout per attempt, retries only
where another try could help, and a plain account of what went wrong, for
counting rather than raising. They share this one function.
"""

from __future__ import annotations

import asyncio
import random

from sidecar.exceptions import UpstreamError
from sidecar.upstream.client import UpstreamClient

__all__ = ["RETRYABLE_4XX", "post_with_retries"]

# Request Timeout and Too Many Requests: the receiver asks us to come back.
RETRYABLE_4XX = frozenset({408, 429})


async def post_with_retries(
    client: UpstreamClient,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    timeout: float,
    attempts: int,
    backoff: float,
) -> str | None:
    """POST ``body``; None once a 2xx arrives, else what went wrong on the last attempt.

    A connection error, a timeout, a 5xx, a 408 or a 429 is retried after a
    random wait of up to ``backoff * 2**(n-1)`` seconds; any other answer is
    final. Cancellation propagates, so a caller's shutdown deadline holds.

    Usage::

        problem = await post_with_retries(client, "/hook", headers, body, timeout=5, attempts=3, backoff=0.5)
    """
    problem: str | None = None
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(random.uniform(0, backoff * 2 ** (attempt - 1)))
        problem, retry = await _attempt(client, target, headers, body, timeout)
        if not retry:
            break
    return problem


async def _attempt(
    client: UpstreamClient, target: str, headers: list[tuple[str, str]], body: bytes, timeout: float
) -> tuple[str | None, bool]:
    """One POST: what went wrong (None for a 2xx), and whether another try could help."""
    try:
        async with asyncio.timeout(timeout):
            async with client.request("POST", target, headers, body) as response:
                await response.read()  # to the end, so the connection goes back to the pool
                status = response.status
    except TimeoutError:
        return f"no answer within {timeout:g}s", True
    except UpstreamError as exc:
        return f"{exc.reason}: {exc}", True
    except Exception as exc:
        # E.g. a header value the HTTP client refuses, or a client never
        # opened: the same request would fail again, but must still be counted.
        return f"{type(exc).__name__}: {exc}", False
    if 200 <= status < 300:
        return None, False
    return f"HTTP {status}", status >= 500 or status in RETRYABLE_4XX
