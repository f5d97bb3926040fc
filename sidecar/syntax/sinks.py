"""``SIDECAR_LOG_SINK``: the grammar of the list of prediction-log sinks.

The sinks themselves are built by :func:`sidecar.sinks.build_sinks`, from the
entries :func:`parse_sink_spec` returns and the kinds :func:`sink_kind` gives.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

__all__ = ["SinkKind", "FILE_PREFIX", "parse_sink_spec", "sink_kind"]

SinkKind = Literal["stdout", "none", "file", "http"]
FILE_PREFIX = "file:"

_HELP = "expected a comma-separated list of stdout, none, file:/path and http(s):// URLs"


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
        kind = sink_kind(entry)
        if kind in kinds:
            raise ValueError(f"{_HELP}, at most one of each kind; found {kind} twice")
        kinds.add(kind)
        entries.append(entry.lower() if kind in ("stdout", "none") else entry)
    if "none" in kinds and len(entries) > 1:
        raise ValueError(f"{_HELP}; none cannot be combined with other sinks")
    return tuple(entries)


def sink_kind(entry: str) -> SinkKind:
    """``stdout``, ``none``, ``file`` or ``http`` for a valid entry; ValueError otherwise."""
    lowered = entry.lower()
    if lowered == "stdout":
        return "stdout"
    if lowered == "none":
        return "none"
    if lowered.startswith(FILE_PREFIX):
        path = entry[len(FILE_PREFIX) :]
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
