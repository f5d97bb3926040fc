"""The package's public surface, pinned, and the options' start-up validation."""

from __future__ import annotations

import pytest

import sidecar.protocols
from sidecar.exceptions import SidecarError
from sidecar.protocols import PROTOCOLS, AdapterOptions, PayloadError, PayloadTooLarge


def test_exported_members() -> None:
    assert sorted(sidecar.protocols.__all__) == [
        "AdapterOptions",
        "PROTOCOLS",
        "PayloadError",
        "PayloadTooLarge",
        "Protocol",
        "parse_exchange",
        "parse_pointer",
        "response_confidence",
    ]
    for name in sidecar.protocols.__all__:
        assert getattr(sidecar.protocols, name) is not None


def test_protocol_names() -> None:
    assert PROTOCOLS == ("auto", "kserve-v1", "open-inference-v2", "tfserving", "mlflow", "json")


def test_payload_errors_are_value_errors_and_sidecar_errors() -> None:
    assert issubclass(PayloadError, ValueError)
    assert issubclass(PayloadError, SidecarError)
    assert issubclass(PayloadTooLarge, PayloadError)


def test_default_options() -> None:
    options = AdapterOptions()
    assert (options.protocol, options.feature_names, options.max_bytes) == ("auto", (), 1 << 20)
    assert options.feature_name(0) == "f0"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "grpc"}, "protocol 'grpc' is not one of auto, kserve-v1"),
        ({"features_pointer": "instances"}, "must be empty or start with '/'"),
        ({"predictions_pointer": "/a~2"}, "not followed by 0 or 1"),
        ({"scores_pointer": "x"}, "must be empty or start with '/'"),
        ({"max_bytes": 0}, "max_bytes must be positive"),
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdapterOptions(**kwargs)  # type: ignore[arg-type]
