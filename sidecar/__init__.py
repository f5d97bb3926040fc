"""ml-sidecar: an ML-monitoring sidecar for model servers."""

from __future__ import annotations

from sidecar.config import Settings
from sidecar.exceptions import (
    ConfigError,
    ProblemsError,
    SidecarError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ConfigError",
    "ProblemsError",
    "Settings",
    "SidecarError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
]
