"""The sidecar's exceptions.

The hierarchy::

    SidecarError
    ├── ConfigError            invalid or missing settings; holds every problem
    └── UpstreamError          the model server could not give a response
        ├── UpstreamConnectError   refused, unreachable, DNS failure   → 502
        ├── UpstreamTimeout        no answer within the timeout        → 504
        └── UpstreamProtocolError  broken or truncated HTTP            → 502

``UpstreamError.reason`` is the value of the ``reason`` label of
``mlsidecar_proxy_errors_total``.
"""

from __future__ import annotations

__all__ = [
    "SidecarError",
    "ConfigError",
    "UpstreamError",
    "UpstreamConnectError",
    "UpstreamTimeout",
    "UpstreamProtocolError",
]


class SidecarError(Exception):
    """Base class of every error the sidecar raises on purpose."""


class ConfigError(SidecarError):
    """Settings that cannot be used. ``problems`` has one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class UpstreamError(SidecarError):
    reason = "protocol"
    status_code = 502


class UpstreamConnectError(UpstreamError):
    reason = "connect"


class UpstreamTimeout(UpstreamError):
    reason = "timeout"
    status_code = 504


class UpstreamProtocolError(UpstreamError):
    reason = "protocol"
