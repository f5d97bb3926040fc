"""``SIDECAR_SAMPLING`` and the ``header:NAME`` / ``feature:NAME`` sources of keys and strata.

The samplers themselves are in :mod:`sidecar.sampling`; this is what the
settings validate at start-up.
"""

from __future__ import annotations

import string
from typing import Literal, get_args

__all__ = ["Strategy", "STRATEGIES", "SourceKind", "parse_source"]

Strategy = Literal["random", "stratified", "importance", "trigger"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
SourceKind = Literal["header", "feature"]

# RFC 9110 token characters: what a header name may contain.
_TCHAR = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def parse_source(text: str) -> tuple[SourceKind, str]:
    """Parse ``header:NAME`` or ``feature:NAME``; header names come back lower-case.

    Raises ``ValueError`` with a message fit for an operator, so the settings
    module can validate ``SIDECAR_STRATIFY_BY`` and ``SIDECAR_SAMPLING_KEY``
    at start-up::

        parse_source("header:X-Segment")  # ("header", "x-segment")
        parse_source("feature:country")   # ("feature", "country")
    """
    kind, sep, name = text.strip().partition(":")
    kind = kind.strip().lower()
    name = name.strip()
    if not sep or kind not in ("header", "feature") or not name:
        raise ValueError("expected 'header:NAME' or 'feature:NAME', e.g. header:x-segment or feature:country")
    if kind == "feature":
        return "feature", name
    if not set(name) <= _TCHAR:
        raise ValueError(f"{name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)")
    return "header", name.lower()
