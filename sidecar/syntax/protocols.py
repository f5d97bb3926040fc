"""``SIDECAR_PROTOCOL``: the payload adapters by name (the adapters are in :mod:`sidecar.protocols`)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["Protocol", "PROTOCOLS"]

Protocol = Literal["auto", "kserve-v1", "open-inference-v2", "tfserving", "mlflow", "json"]
PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)
