"""What every adapter shares: the options, the one exception type, the protocol names.

The exceptions, as the capture worker sees them::

    PayloadError (ValueError)        a body that cannot be read as its protocol → parse_error
    └── PayloadTooLarge              a compressed body past max_bytes once decoded → too_large

A body that is well formed but simply carries nothing to capture (an empty GET,
an unrecognised shape under ``auto``) is not an error: the adapter returns a
``Parsed`` with no rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sidecar.exceptions import SidecarError
from sidecar.syntax.jsonpointer import parse_pointer
from sidecar.syntax.protocols import PROTOCOLS, Protocol

__all__ = ["AdapterOptions", "Inputs", "Outputs", "PayloadError", "PayloadTooLarge", "Protocol", "PROTOCOLS", "member"]

# Row widths whose positional names AdapterOptions keeps; payloads choose widths, so the memo is bounded.
_POSITIONAL_MAX = 64


class PayloadError(SidecarError, ValueError):
    """A request or response body that its protocol adapter cannot read.

    The only exception :func:`sidecar.protocols.parse_exchange` raises; the
    capture worker counts it as ``parse_error`` and moves on.
    """


class PayloadTooLarge(PayloadError):
    """A compressed body whose decoded size would pass ``AdapterOptions.max_bytes``."""


@dataclass(frozen=True)
class AdapterOptions:
    """How to read captured bodies; built once from the settings.

    ``feature_names`` names positional inputs (``SIDECAR_FEATURE_NAMES`` or the
    reference profile's features); positions past its end are named ``f<i>``.
    The three pointers (RFC 6901) are used by the ``json`` protocol only.

    Usage::

        options = AdapterOptions(protocol="kserve-v1", feature_names=("age", "income"))
        parsed = parse_exchange(exchange, options)

    Raises ``ValueError`` for an unknown protocol, a bad pointer or a
    non-positive ``max_bytes``, so a wrong value fails at start-up.
    """

    protocol: str = "auto"
    feature_names: tuple[str, ...] = ()
    features_pointer: str | None = None
    predictions_pointer: str | None = None
    scores_pointer: str | None = None
    max_bytes: int = 1 << 20  # decompressed-size cap for gzip/deflate bodies
    # SIDECAR_TASK=regression: a number output is the predicted value, even in [0, 1] (predictions.py, rule 3).
    regression: bool = False
    _positional: dict[int, tuple[str, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        for pointer in (self.features_pointer, self.predictions_pointer, self.scores_pointer):
            if pointer is not None:
                parse_pointer(pointer)
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {self.max_bytes}")

    def feature_name(self, position: int) -> str:
        """The name of the positional input at ``position``."""
        if position < len(self.feature_names):
            return self.feature_names[position]
        return f"f{position}"

    def positional_names(self, count: int) -> tuple[str, ...]:
        """The names of the first ``count`` positional inputs."""
        # Every row of positional inputs asks the same question: answer each count once.
        names = self._positional.get(count)
        if names is None:
            names = tuple(self.feature_name(i) for i in range(count))
            if len(self._positional) < _POSITIONAL_MAX:
                self._positional[count] = names
        return names


@dataclass(slots=True)
class Inputs:
    """What an adapter read from a request: one feature dict per row."""

    rows: list[dict[str, Any]]
    request_id: str | None = None
    # False when the request held a single row rather than a batch (only the
    # ``json`` protocol can tell), so the response is that row's output whole.
    batched: bool = True


@dataclass(slots=True)
class Outputs:
    """What an adapter read from a response: one raw output value per row."""

    values: list[Any]
    model_version: str | None = None
    request_id: str | None = None


def member(document: Any, key: str, what: str) -> Any:
    """``document[key]`` of a JSON object, or ``PayloadError`` naming what was expected."""
    if not isinstance(document, dict) or key not in document:
        raise PayloadError(f"expected {what} with {key!r}")
    return document[key]
