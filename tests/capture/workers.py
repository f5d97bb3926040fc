"""A capture worker for the capture tests: KServe V1 payloads, no PII fields, model "iris"."""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.capture.handoff import Capture
from sidecar.capture.privacy import Anonymizer
from sidecar.capture.worker import CaptureWorker
from sidecar.protocols import AdapterOptions
from sidecar.sinks import Sink

__all__ = ["kserve_worker"]


def kserve_worker(capture: Capture, sinks: Sequence[Sink] = (), feature_names: tuple[str, ...] = ()) -> CaptureWorker:
    """A worker that reads ``capture``'s queue as KServe V1 and logs to ``sinks``."""
    return CaptureWorker(
        capture,
        AdapterOptions(protocol="kserve-v1", feature_names=feature_names),
        Anonymizer((), "hash"),
        list(sinks),
        model_name="iris",
        model_version=None,
        version_header=b"x-model-version",
    )
