"""An experiment's arms on the request path: the arm that serves a request (split), the challenger's copy (shadow).

:class:`Split` is the table the proxy serves a split-mode experiment's
requests by: one ``(client, route metrics, variant)`` per arm, in the
:class:`~sidecar.experiments.routing.Router`'s order, so that an arm is one
index into a tuple. It is built once at start-up; per request the proxy asks
:meth:`Split.route` for the arm, after the first body message and before it
forwards (a ``feature:`` key's unit is in the body; see :mod:`sidecar.experiments.routing`).

:class:`Mirror` is a shadow-mode experiment on the proxy: the
:class:`~sidecar.experiments.shadow.Shadow` that sends the copies, and the
bound on the request bodies the proxy keeps for them. A body that came whole
in the first ASGI message costs nothing to keep: the proxy holds it anyway.
A streamed one is kept by a :class:`MirrorBody`, chunk by chunk, up to
``max_body_bytes``, and the bodies all running requests keep are bounded by
the same number in total (as the capture's in-flight budget bounds its own:
without it, 512 clients streaming large bodies to a slow model would each
hold one). A body not kept whole goes to :meth:`Shadow.submit` as None,
counted ``dropped_too_large``.

Nothing here runs for a proxy without an experiment: it checks for a
:class:`Split` or :class:`Mirror` and finds None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sidecar.serving.metrics import ProxyMetrics, RouteMetrics
from sidecar.upstream.client import UpstreamClient

if TYPE_CHECKING:
    # Types only: the proxy's imports stay what they were (no payload adapters, no experiment code) until the
    # assembly builds an experiment's parts and hands them over.
    from sidecar.experiments.routing import Pick, Router
    from sidecar.experiments.shadow import MirrorQueue
    from sidecar.experiments.units import FeatureUnit

__all__ = ["Arm", "Mirror", "MirrorBody", "Split"]

Headers = Sequence[tuple[bytes, bytes]]
# What serves one arm's requests: its upstream, its request metrics, and the variant label they carry.
Arm = tuple[UpstreamClient, RouteMetrics, str]


class Split:
    """A split-mode experiment on the proxy: the router, and each arm's client and request metrics.

    ``clients`` has one client per arm in ``router.variants`` order, the
    control's being the primary upstream's; ``metrics`` must have a route per
    arm, named by the variant (the ``variant`` label carries the arm). A
    ``feature:NAME`` key reads its unit from the body with ``units``, a
    :class:`FeatureUnit` for ``NAME`` built on the capture worker's adapter
    options, so that the unit a request is routed by is the one its captured
    record carries; any other key takes none.

    Usage::

        split = Split(Router(experiment), (primary, challenger), metrics)  # a header: key, or none
        split = Split(router, clients, metrics, units=FeatureUnit("user_id", worker.options))  # feature:user_id
        index, unit = split.route(scope["headers"], scope["path"], body)  # body: None when it is streamed
        client, route_metrics, variant = split.arms[index]
    """

    __slots__ = ("router", "arms", "control", "_units")

    def __init__(
        self,
        router: Router,
        clients: Sequence[UpstreamClient],
        metrics: ProxyMetrics,
        *,
        units: FeatureUnit | None = None,
    ) -> None:
        variants = router.variants
        if len(clients) != len(variants):
            raise ValueError(f"{len(variants)} arms ({', '.join(v.name for v in variants)}) but {len(clients)} clients")
        missing = [v.name for v in variants if v.name not in metrics.routes]
        if missing:
            raise ValueError(f"the proxy's metrics have no variant for the arms {', '.join(missing)}")
        self.router = router
        self.arms: tuple[Arm, ...] = tuple(
            (client, metrics.routes[v.name], v.name) for client, v in zip(clients, variants, strict=True)
        )
        self.control = router.experiment.control.name
        key = router.experiment.assignment.key
        feature = key[1] if key is not None and key[0] == "feature" else None
        if feature is not None and (units is None or units.name != feature):
            raise ValueError(f"the key feature:{feature} is read from the body, by a FeatureUnit({feature!r}, options)")
        if feature is None and units is not None:
            shown = "no key (a coin per request)" if key is None else f"{key[0]}:{key[1]}"
            raise ValueError(f"units read a feature from the body, but the assignment has {shown}")
        self._units = units

    def route(self, headers: Headers, path: str, body: bytes | None) -> Pick:
        """The arm of one request, counted by the router; ``body`` is the whole body, or None when it is streamed.

        The arm's index in :attr:`arms`, and the request's unit (None: a coin chose), as
        :meth:`Router.pick` gives them. Only a ``feature:`` key reads ``path`` and ``body``; a streamed
        body has no unit then, and a coin chooses its arm (counted in ``router.randomised``), as for any
        request without one.
        """
        units = self._units
        if units is None:
            return self.router.pick(headers)
        return self.router.pick(headers, None if body is None else units.find(path, headers, body))


class Mirror:
    """A shadow-mode experiment on the proxy: where its mirrors go, and the bound on streamed bodies kept for them.

    ``shadow`` is the :class:`~sidecar.experiments.shadow.Shadow` that sends
    them (inline mode), or the :class:`~sidecar.plane.shadow.RemoteShadow`
    that hands them to the monitoring process to send (process mode); the
    proxy calls its ``submit`` either way.

    ``max_body_bytes`` bounds one streamed request body kept for a mirror,
    and the bodies kept by all the running requests together; pass the
    Shadow's ``queue_max_bytes``, since a larger body could not be queued anyway.

    Usage::

        mirror = Mirror(shadow, max_body_bytes=16 << 20)
        app = ProxyApp(client, metrics, capture, variant="primary", send_timeout=30, mirror=mirror)
    """

    __slots__ = ("shadow", "max_body_bytes", "held")

    def __init__(self, shadow: MirrorQueue, *, max_body_bytes: int) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, not {max_body_bytes}")
        self.shadow = shadow
        self.max_body_bytes = max_body_bytes
        # Bytes of streamed bodies kept by requests still running, for their mirrors.
        self.held = 0


class MirrorBody:
    """One streamed request body kept for its mirror, within its :class:`Mirror`'s bounds.

    The proxy adds each chunk as it forwards it (:meth:`add`), calls
    :meth:`finish` after the last, takes :meth:`body` for the mirror once
    control has answered, and calls :meth:`release` when the request ends,
    whatever happened. :meth:`body` is None when the body was not kept whole:
    too large, the in-flight bound reached, or never finished (the upstream
    answered before it had it all).

    Usage::

        kept = MirrorBody(mirror)
        kept.add(b'{"instances": ')
        kept.add(b"[[1.0]]}")
        kept.finish()
        kept.body()  # b'{"instances": [[1.0]]}'
        kept.release()
    """

    __slots__ = ("_mirror", "_chunks", "_held", "_finished")

    def __init__(self, mirror: Mirror) -> None:
        self._mirror = mirror
        # None once the body is given up: nothing more is kept.
        self._chunks: list[bytes] | None = []
        self._held = 0
        self._finished = False

    def add(self, chunk: bytes) -> None:
        """Keep ``chunk``, or give the whole body up when it takes this body or all of them past the bound."""
        chunks = self._chunks
        if chunks is None or not chunk:
            return
        mirror = self._mirror
        size = len(chunk)
        held = self._held + size
        if held > mirror.max_body_bytes or mirror.held + size > mirror.max_body_bytes:
            # The chunks kept so far are dropped with the list: give their bytes back now.
            self.release()
            self._chunks = None
            return
        chunks.append(chunk)
        self._held = held
        mirror.held += size

    def finish(self) -> None:
        """The last chunk has been added."""
        self._finished = True

    def body(self) -> bytes | None:
        """The whole body, or None when it was not kept whole."""
        chunks = self._chunks
        if chunks is None or not self._finished:
            return None
        return b"".join(chunks)

    def release(self) -> None:
        """Give the bytes held back to the in-flight bound; the request no longer keeps them (idempotent)."""
        self._mirror.held -= self._held
        self._held = 0
