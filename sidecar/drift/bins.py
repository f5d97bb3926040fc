"""Names a person can read for a feature's reference bins: "30–40" rather than "3".

A numeric bin is named by its edges. The bins are closed on the right
(a value equal to an edge counts in the bin below it, Prometheus' ``le``),
so the first bin is "≤ a", an inner one "a–b" (more than a, at most b) and
the last "> z"; with negative edges the dash is spaced, "-10 – -5", so that
it does not read as a minus sign. A profile with no edges has one bin, "all
values".

Edges are quantiles, so they carry float noise ("29.999999999"). Each
feature's edges are rounded to one number of decimals: enough to show its
smallest gap between edges with two significant digits, so neighbouring
edges never read alike, and no more; trailing zeros go ("40", not "40.00").

A categorical bin is named by its category, and the bin of every value the
reference did not have by "(other)"; an empty category is "(empty)". Should
the reference itself have a category spelt like one of those, the name gets
more parentheses until it is unique, so the labels always tell the bins
apart.

These are display names, for ``GET /api/v1/drift`` and the status page.
The ``bin`` label of the metrics stays the index (numeric) or the category
(:attr:`Distribution.labels`), because the fleet-wide recording rules join
on it.

Usage::

    age = Distribution.numeric(edges=(30.0, 40.0000000001), ratios=(0.3, 0.4, 0.3), stats=Stats(count=1000))
    bin_labels(age)  # ("≤ 30", "30–40", "> 40")
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sidecar.reference import Distribution

__all__ = ["bin_labels"]

# Past this many decimals a fixed-point edge is unreadable anyway: the shortest repr is used.
_MAX_DECIMALS = 12


def bin_labels(reference: Distribution) -> tuple[str, ...]:
    """The display name of each of ``reference``'s bins, in the order of its ratios."""
    if reference.kind == "numeric":
        return _numeric(reference.edges)
    taken = set(reference.categories)
    categories = tuple(_unique("(empty)", taken) if c == "" else c for c in reference.categories)
    return (*categories, _unique("(other)", taken))


def _numeric(edges: Sequence[float]) -> tuple[str, ...]:
    if not edges:
        return ("all values",)
    shown = _rounded(edges)
    dash = " – " if any(text.startswith("-") for text in shown) else "–"
    inner = tuple(f"{low}{dash}{high}" for low, high in zip(shown, shown[1:], strict=False))
    return (f"≤ {shown[0]}", *inner, f"> {shown[-1]}")


def _rounded(edges: Sequence[float]) -> list[str]:
    gaps = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    smallest = min(gaps, default=0.0)
    if smallest > 0.0 and math.isfinite(smallest):
        # Two significant digits of the smallest gap: 10^-decimals is at most a tenth of it.
        decimals = max(0, math.ceil(-math.log10(smallest)) + 1)
    else:
        # One edge: three significant digits of its own size.
        size = abs(edges[0])
        decimals = max(0, 2 - math.floor(math.log10(size))) if size > 0.0 and math.isfinite(size) else 0
    return [_number(edge, decimals) for edge in edges]


def _number(value: float, decimals: int) -> str:
    if not math.isfinite(value) or decimals > _MAX_DECIMALS or abs(value) >= 1e15:
        return repr(value)
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name = f"({name})"
    return name
