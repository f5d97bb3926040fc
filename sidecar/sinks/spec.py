"""``SIDECAR_LOG_SINK``: validate the list of sinks, then build them."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from sidecar.sinks.base import Sink
from sidecar.sinks.files import FileSink, StdoutSink
from sidecar.sinks.http import HttpSink

__all__ = ["parse_sink_spec", "build_sinks"]

_HELP = "expected a comma-separated list of stdout, none, file:/path and http(s):// URLs"
_FILE = "file:"


def parse_sink_spec(text: str) -> tuple[str, ...]:
    """Validate ``SIDECAR_LOG_SINK`` and return its entries, trimmed, keywords lower-cased.

    At most one sink of each kind, since the kind is the ``sink`` label, and
    ``none`` alone. Raises ``ValueError`` with a message that reads after
    "is not valid: ".

    >>> parse_sink_spec("stdout, file:/var/log/p.jsonl")
    ('stdout', 'file:/var/log/p.jsonl')
    """
    entries: list[str] = []
    kinds: set[str] = set()
    for raw in text.split(","):
        entry = raw.strip()
        kind = _kind(entry)
        if kind in kinds:
            raise ValueError(f"{_HELP}, at most one of each kind; found {kind} twice")
        kinds.add(kind)
        entries.append(entry.lower() if kind in ("stdout", "none") else entry)
    if "none" in kinds and len(entries) > 1:
        raise ValueError(f"{_HELP}; none cannot be combined with other sinks")
    return tuple(entries)


def _kind(entry: str) -> str:
    """``stdout``, ``none``, ``file`` or ``http`` for a valid entry; ValueError otherwise."""
    lowered = entry.lower()
    if lowered in ("stdout", "none"):
        return lowered
    if lowered.startswith(_FILE):
        path = entry[len(_FILE) :]
        if not path or path.startswith("//"):
            raise ValueError(f"{_HELP}; a file sink is file:/path, e.g. file:/var/log/ml-sidecar/predictions.jsonl")
        return "file"
    parts = urlsplit(entry)
    if parts.scheme.lower() in ("http", "https"):
        try:
            port_ok = parts.port != 0
        except ValueError:  # out of range or not a number
            port_ok = False
        if not parts.hostname or not port_ok or parts.fragment:
            raise ValueError(f"{_HELP}; an http sink needs a host, a port from 1 to 65535 if any, and no #fragment")
        return "http"
    raise ValueError(f"{_HELP}; found {entry!r}" if entry else f"{_HELP}; found an empty entry")


def build_sinks(
    entries: Sequence[str], *, source: str, queue_size: int, file_max_bytes: int, file_backups: int, http_timeout: float
) -> list[Sink]:
    """Create the sinks for entries that :func:`parse_sink_spec` returned; ``none`` gives no sink.

    ``source`` is the CloudEvents source, e.g. ``ml-sidecar/<model>``;
    ``queue_size`` bounds each sink's queue in rows.
    """
    sinks: list[Sink] = []
    for entry in entries:
        kind = _kind(entry)
        if kind == "stdout":
            sinks.append(StdoutSink(queue_size=queue_size))
        elif kind == "file":
            path = entry[len(_FILE) :]
            sinks.append(FileSink(path, queue_size=queue_size, max_bytes=file_max_bytes, backups=file_backups))
        elif kind == "http":
            sinks.append(HttpSink(entry, source=source, queue_size=queue_size, timeout=http_timeout))
    return sinks
