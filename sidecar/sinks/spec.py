"""``SIDECAR_LOG_SINK``: build the sinks its entries name.

The list is validated at start-up by :func:`parse_sink_spec`, which lives in
:mod:`sidecar.syntax.sinks` so the settings check it without loading the
sinks; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.sinks.base import DEFAULT_QUEUE_MAX_BYTES, Sink
from sidecar.sinks.files import FileSink, StdoutSink
from sidecar.sinks.http import HttpSink
from sidecar.syntax.sinks import FILE_PREFIX, parse_sink_spec, sink_kind

__all__ = ["parse_sink_spec", "build_sinks"]


def build_sinks(
    entries: Sequence[str],
    *,
    source: str,
    queue_size: int,
    file_max_bytes: int,
    file_backups: int,
    http_timeout: float,
    queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
) -> list[Sink]:
    """Create the sinks for entries that :func:`parse_sink_spec` returned; ``none`` gives no sink.

    ``source`` is the CloudEvents source, e.g. ``ml-sidecar/<model>``;
    ``queue_size`` and ``queue_max_bytes`` bound each sink's queue in rows and in bytes.
    """
    sinks: list[Sink] = []
    for entry in entries:
        kind = sink_kind(entry)
        if kind == "stdout":
            sinks.append(StdoutSink(queue_size=queue_size, queue_max_bytes=queue_max_bytes))
        elif kind == "file":
            path = entry[len(FILE_PREFIX) :]
            sinks.append(
                FileSink(
                    path,
                    queue_size=queue_size,
                    max_bytes=file_max_bytes,
                    backups=file_backups,
                    queue_max_bytes=queue_max_bytes,
                )
            )
        elif kind == "http":
            sinks.append(
                HttpSink(
                    entry, source=source, queue_size=queue_size, timeout=http_timeout, queue_max_bytes=queue_max_bytes
                )
            )
    return sinks
