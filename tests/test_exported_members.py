"""Pin the public API, as httpx's tests/test_exported_members.py does."""

from __future__ import annotations

import sidecar


def test_all_exports_exist_and_are_listed() -> None:
    assert sidecar.__all__ == [
        "__version__",
        "ConfigError",
        "Settings",
        "SidecarError",
        "UpstreamConnectError",
        "UpstreamError",
        "UpstreamProtocolError",
        "UpstreamTimeout",
    ]
    for name in sidecar.__all__:
        assert getattr(sidecar, name) is not None
