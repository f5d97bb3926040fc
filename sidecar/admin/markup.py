"""The small HTML vocabulary of the status page: escaping, numbers, times and tables.

Every string that reaches the page goes through :func:`esc` first. Feature
names and categories come from traffic (a learned reference takes them from
the payloads), so they are attacker-controlled: an unescaped one would run
script on the operator's browser. Markup is built as plain strings, so the
rule is simple to check: only this module's helpers and literal tags join
strings into HTML.

Usage::

    table(("Feature", "PSI"), [(esc(name), number(0.31)) for name in names], caption="Drift")
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

from sidecar.records import rfc3339

__all__ = ["NONE", "ago", "esc", "number", "percent", "seconds", "table", "timestamp"]

NONE = "–"  # what a missing value reads as; an en dash, so "0" is never mistaken for "unknown"


def esc(text: object) -> str:
    """``text`` as HTML text or as an attribute value (quotes escaped too)."""
    return html.escape(str(text), quote=True)


def number(value: float | None, digits: int = 3) -> str:
    """A value with ``digits`` significant digits (``0.314``, ``12.5``), a large one whole (``12,345``)."""
    if value is None or not math.isfinite(value):
        return NONE
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def percent(share: float | None, digits: int = 1) -> str:
    """A share from 0 to 1 as a percentage: ``0.125`` → ``12.5 %``."""
    if share is None or not math.isfinite(share):
        return NONE
    return f"{share * 100:.{digits}f} %"


def seconds(value: float | None) -> str:
    """A duration for a person: ``0.0042`` → ``4.2 ms``, ``95`` → ``1.6 min``."""
    if value is None or not math.isfinite(value):
        return NONE
    if value < 1.0:
        return f"{value * 1000:.3g} ms"
    if value < 120.0:
        return f"{value:.3g} s"
    if value < 7200.0:
        return f"{value / 60:.3g} min"
    if value < 172_800.0:
        return f"{value / 3600:.3g} h"
    return f"{value / 86_400:.3g} d"


def timestamp(value: float | None) -> str:
    """A ``<time>`` element in RFC 3339 UTC, the same text the JSON API gives."""
    if value is None:
        return NONE
    text = rfc3339(value)
    return f'<time datetime="{text}">{text}</time>'


def ago(value: float | None, now: float) -> str:
    """How long before ``now``: ``12 s ago``; :data:`NONE` for never."""
    if value is None:
        return NONE
    return f"{seconds(max(0.0, now - value))} ago"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    caption: str,
    classes: str = "",
    row_headers: bool = True,
) -> str:
    """A scrollable table; cells are markup already (escape them first). The first cell is the row's header.

    The wrapper scrolls on its own, so a wide table never makes the whole page
    scroll sideways on a phone; ``tabindex`` lets a keyboard user scroll it.
    """
    head = "".join(f'<th scope="col">{h}</th>' for h in headers)
    body = []
    for row in rows:
        first, rest = row[0], row[1:]
        lead = f'<th scope="row">{first}</th>' if row_headers else f"<td>{first}</td>"
        body.append("<tr>" + lead + "".join(f"<td>{cell}</td>" for cell in rest) + "</tr>")
    cls = f' class="{classes}"' if classes else ""
    return (
        f'<div class="scroll" tabindex="0" role="region" aria-label="{esc(caption)}">'
        f"<table{cls}><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
