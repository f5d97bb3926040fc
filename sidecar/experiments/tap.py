"""The challenger's answers to the capture worker, for the shadow comparison.

A :class:`ShadowTap` is the :class:`~sidecar.experiments.shadow.Shadow`'s
``on_response``: once per mirror sent, it turns the answer into an
exchange flagged ``shadow`` (in its plain form, :data:`~sidecar.records.ExchangeFields`) and hands it to
``put``. Inline, that is the capture hand-off's
:meth:`~sidecar.capture.handoff.Handoff.put_spare`, on the proxy's loop,
and the answer travels as control's captures do. In process mode the Shadow
runs in the monitoring process (:mod:`sidecar.plane.shadow`) and ``put``
gives the answer to the capture worker there at once. Either way the worker
gives it to the comparison
(:class:`~sidecar.experiments.pairing.ShadowPairing`) and to nothing else: a
challenger's answer is not served traffic, so it never reaches the model's
own drift, quality, performance, prediction log or predictions table.

What goes:

- a mirror whose request control's capture kept (``captured``): control's
  request, as captured, and the challenger's whole response, to be read by
  the protocol adapters as control's was and paired with it by request id;
- any other: its status and latency only (no bodies), which still count
  for the challenger's error rate and latency.

A mirror with no complete answer gets the status the proxy would have
answered a client with: 504 for a ``timeout``, 502 for an ``error`` with no
5xx of the challenger's own. So the challenger's error rate is the share of
5xx, as control's is from the proxy's counters.

Bounded and O(1) inline: the answer takes only the hand-off's spare half
(the queue under half full in count and in bytes), so that under a backlog
control's captures keep the other half; what ``put`` refuses (returns False)
is dropped and counted in :attr:`ShadowTap.dropped`
(``mlsidecar_shadow_comparison_dropped_total``).

Usage::

    tap = ShadowTap(capture.queue.put_spare, variant="challenger")
    shadow = Shadow(url, experiment="ranker-v2", on_response=tap, captured=capture.captured, ...)
    tap.dropped        # answers the hand-off had no spare room for
"""

from __future__ import annotations

from collections.abc import Callable
from time import time

from sidecar.experiments.shadow import ShadowResponse
from sidecar.records import ExchangeFields

__all__ = ["ShadowTap", "answer_status"]

# The strategy field of a challenger's exchange: it was not sampled, it came with a mirror.
_STRATEGY = "shadow"


def answer_status(response: ShadowResponse) -> int:
    """The answer's status, or the one the proxy would have given a client: 504 for a timeout, 502 for a
    failed exchange without a 5xx of the challenger's own."""
    if response.outcome == "sent" or response.status >= 500:
        return response.status
    return 504 if response.outcome == "timeout" else 502


class ShadowTap:
    """The Shadow's ``on_response``: each answer to ``put``; see the module docstring.

    ``put`` takes the answer, or returns False to have it dropped and counted;
    ``variant`` is the challenger's name in the definition.

    Usage::

        tap = ShadowTap(capture.queue.put_spare, variant="challenger")
        tap(response)      # on the loop, from the Shadow; never blocks, never raises
    """

    __slots__ = ("put", "variant", "dropped")

    def __init__(self, put: Callable[[ExchangeFields], bool], *, variant: str) -> None:
        self.put = put
        self.variant = variant
        self.dropped = 0

    def __call__(self, response: ShadowResponse) -> None:
        status = answer_status(response)
        latency = response.latency_seconds
        captured = response.captured
        # The plain form, in Exchange's field order, as the capture hand-off builds its own.
        exchange: ExchangeFields
        if captured is None:
            exchange = (
                response.request_id,
                time() - latency,
                "",
                "",
                (),
                b"",
                status,
                (),
                b"",
                latency,
                self.variant,
                _STRATEGY,
                None,
                False,
                None,
                True,
            )
        else:
            exchange = (
                response.request_id,
                captured.timestamp,
                captured.method,
                captured.path,
                tuple(captured.headers),
                captured.body,
                status,
                tuple(response.headers),
                # A body past the Shadow's bound was not kept: an answer that cannot be read.
                b"" if response.body is None or response.outcome != "sent" else response.body,
                latency,
                self.variant,
                _STRATEGY,
                captured.probability,
                captured.request_id_generated,
                None,
                True,
            )
        if not self.put(exchange):
            self.dropped += 1
