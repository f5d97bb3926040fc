"""Routing: which arm of a split experiment a request goes to, and so which upstream serves it.

:meth:`Router.route` reads the unit of the request (the assignment key's
value), hands it to the :class:`~.assignment.Assigner`, and returns a
:class:`Route`: the variant, its index in the definition, the upstream
(None: the primary, ``SIDECAR_UPSTREAM_URL``; else the variant's URL), the
unit, and whether a coin chose the arm because the request had no unit. It
counts requests by arm, keyed and randomised apart (:attr:`Router.keyed`,
:attr:`Router.randomised`), for the sample-ratio check on assignment. A
randomised request is a unit of its own; a keyed unit counts once per request,
so a chi-square on the keyed counts would take a few heavy users for a
mismatch: a check by units counts distinct units (the captured records have
them), and these counts show how the requests split.

It runs on the proxy's request path, so it is O(1) and allocation-light: one
pass over the request headers for a ``header:`` key, one keyed BLAKE2b, one
bisection of its digest, one pair (none at all for a randomised request, whose
answers are made once). The proxy calls :meth:`Router.pick`, which gives the
arm's index and the unit as a plain pair: about 0.5 µs a call here, where the
:class:`Route` of :meth:`Router.route`, for readers off the request path, costs
a third more; ``tests/experiments/test_routing.py`` measures both.

**Keys.** A ``header:NAME`` key is read from the request's headers as they
arrive: the raw bytes of the first ``NAME`` header are the unit. A
``feature:NAME`` key is in the payload, and the proxy forwards a request
before anything parses it, so the value must come from the caller:
``route(headers, feature=value)``. The proxy can have it for a request whose
whole body came in the first ASGI message (it reads that message before it
forwards anyway, so waiting for it adds no latency) by parsing it with
:class:`~.units.FeatureUnit`, the capture worker's own adapters: the unit the
request is routed by is then the one its captured record carries. That parse
is the one piece of body work on the request path, paid only by experiments
keyed by a feature (:attr:`Router.needs_feature`), bounded by
:data:`~.units.MAX_BODY_BYTES`; a header key costs none of it, and is what to
prefer. A request without the unit (no such header, a streamed or oversized
body, a batch of several users) is routed by a per-request coin with the
same weights and counted in :attr:`Router.randomised`, so the analysis knows
those requests are not one unit each, and a key that is often missing shows.

**The fallback flag wins.** While ``use_fallback_model`` is set, the proxy
sends every new request to the fallback model, experiment or not. The flag is
the proxy's: it reads it first and calls :meth:`Router.pick` only when it is
clear, so a request the fallback served is neither routed nor counted (it was
in no arm), and gets no shadow copy either. :meth:`Router.pick` has no effect
but its counts, so skipping it is all the flag needs; :attr:`Router.variants`
gives the arms in index order, to build the proxy's table of upstream clients
and request metrics once::

    arms = tuple((clients[v.upstream] if v.upstream else primary, metrics.routes[v.name], v.name)
                 for v in router.variants)
    ...
    if flags.use_fallback_model:
        client, route_metrics, variant = fallback                  # no experiment for this request
    else:
        index, unit = router.pick(scope["headers"], feature=feature)  # feature: None unless needs_feature
        client, route_metrics, variant = arms[index]

Shadow experiments do not route (every client gets control's answer); they
mirror, with :mod:`.shadow`.

Usage::

    router = Router(load_experiment("/etc/sidecar/experiment.yaml"))
    route = router.route([(b"x-user-id", b"u-17")])
    route.variant, route.upstream, route.randomised   # ("treatment", "http://challenger:8080", False)
    router.pick([(b"x-user-id", b"u-17")])            # (1, b"u-17"): the same arm, as the proxy takes it
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

from sidecar.experiments.assignment import Assigner
from sidecar.experiments.definition import Experiment, Variant
from sidecar.experiments.units import unit_text

__all__ = ["Pick", "Route", "Router"]

Headers = Sequence[tuple[bytes, bytes]]
# Router.pick's answer: the arm's index in Router.variants, and the unit that chose it (None: a coin did). A plain
# pair, which the proxy unpacks at once: making a Route as well costs a third more than the whole pick.
Pick = tuple[int, bytes | None]

_new = tuple.__new__


class Route(NamedTuple):
    """Where one request goes: the arm, its upstream (None: the primary), and the unit that chose it.

    ``unit`` is the key's value as bytes (a header's raw bytes, a feature's
    :func:`~.units.unit_text` in UTF-8), None when ``randomised``.

    Usage::

        Route("treatment", variant_index=1, upstream="http://challenger:8080", randomised=False, unit=b"u-17")
    """

    variant: str
    variant_index: int
    upstream: str | None
    randomised: bool
    unit: bytes | None


class Router:
    """Routes the requests of a split-mode experiment to its arms; see the module docstring.

    ``rng`` draws the coins for requests without a unit (pass a seeded one in tests).
    A shadow-mode experiment has no arms to route to: ``ValueError``.

    Usage::

        router = Router(experiment)
        route = router.route(scope["headers"])          # a header: key
        route = router.route(headers, feature="u-17")    # a feature: key, the value parsed by the caller
        index, unit = router.pick(scope["headers"])     # the same, as the proxy takes it: (1, b"u-17")
        router.keyed, router.randomised                  # requests per arm, by unit and by coin
    """

    __slots__ = (
        "experiment",
        "variants",
        "needs_feature",
        "keyed",
        "randomised",
        "_index",
        "_coin",
        "_header",
        "_coins",
        "_picks",
    )

    def __init__(self, experiment: Experiment, *, rng: random.Random | None = None) -> None:
        assigner = Assigner.of(experiment, rng=rng)
        # Bound once: an attribute read fewer per request.
        self._index = assigner.index
        self._coin = assigner.coin
        self.experiment = experiment
        self.variants: tuple[Variant, ...] = experiment.variants
        key = experiment.assignment.key
        # Header names arrive lower-case in ASGI, and the definition lower-cases the key's.
        self._header = key[1].encode("latin-1") if key is not None and key[0] == "header" else b""
        self.needs_feature = key is not None and key[0] == "feature"
        # Requests routed per arm, in the variants' order: by their unit, and by a coin.
        self.keyed = [0] * len(self.variants)
        self.randomised = [0] * len(self.variants)
        # A randomised request's answer has no unit, so it is one of these, made once.
        self._coins = tuple(Route(v.name, i, v.upstream, True, None) for i, v in enumerate(self.variants))
        self._picks: tuple[Pick, ...] = tuple((i, None) for i in range(len(self.variants)))

    def route(self, headers: Headers, feature: object = None) -> Route:
        """The arm of a request, from its ``headers`` (a ``header:`` key) or ``feature`` (a ``feature:`` key).

        ``feature`` is the key's value as the caller parsed it, None when it has none; it is read only for a
        ``feature:`` key, and ``headers`` only for a ``header:`` key. :meth:`pick`, as a :class:`Route`.
        """
        index, unit = self.pick(headers, feature)
        if unit is None:
            return self._coins[index]
        variant = self.variants[index]
        # tuple.__new__ skips the generated __new__'s call.
        return _new(Route, (variant.name, index, variant.upstream, False, unit))

    def pick(self, headers: Headers, feature: object = None) -> Pick:
        """:meth:`route` for the proxy: the arm's index in :attr:`variants`, and the unit (None: a coin chose)."""
        unit: bytes | None = None
        name = self._header
        if name:
            for key, value in headers:
                if key == name:
                    unit = value
                    break
        elif feature is not None:
            text = unit_text(feature)
            unit = None if text is None else text.encode()
        # An empty header is no unit, as Assigner.assign says; the coin below takes it.
        if unit:
            index = self._index(unit)
            self.keyed[index] += 1
            return index, unit
        index = self._coin()
        self.randomised[index] += 1
        return self._picks[index]
