"""Inline SVG charts for the status page, rendered on the server.

No script draws anything: a chart is markup, so it shows offline, with
scripts blocked, and in a saved copy of the page. Each chart carries its own
text alternative: an ``aria-label`` that says what it shows and what stands
out, and, for the distributions, a visually hidden table of every bin.

- :func:`bins_chart`: a feature's reference and current share per reference
  bin, one row per bin, labelled by the bin's name (its edges, or the
  category), horizontal so that long labels stay readable on a phone;
- :func:`line_chart`: series over time (PSI per feature, performance,
  traffic), with dashed threshold lines;
- :func:`sparkline`: a tiny trend for a table cell;
- :func:`interval_chart`: an estimate and its interval around 0, for a table cell (an experiment's lift).

Every name that reaches a chart is escaped here (:func:`~sidecar.admin.markup.esc`).

Usage::

    bins_chart("income", ("≤ 30", "30–40", "> 40"), (0.2, 0.5, 0.3), (0.1, 0.3, 0.6), chart_id="f-0")
    line_chart([Series("income", times, psi)], title="PSI", now=time.time(), value=number, thresholds=(0.1, 0.2))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from sidecar.admin.markup import ago, esc, number, percent, table

__all__ = ["PALETTE", "Series", "bins_chart", "interval_chart", "legend", "line_chart", "sparkline"]

Floats = npt.NDArray[np.float64]

REFERENCE_COLOUR: Final = "#8c959f"
CURRENT_COLOUR: Final = "#0969da"
# Distinct in hue and, with the dashes, without colour too (about 1 in 12 men tell some of these hues apart poorly).
PALETTE: Final = ("#0969da", "#bc4c00", "#1a7f37", "#8250df", "#cf222e", "#1b7c83")
DASHES: Final = ("", "6 3", "2 3", "8 3 2 3", "1 3", "12 4")
MAX_POINTS: Final = 240  # a line's points, at most: more is finer than the chart's pixels
LABEL_CHARS: Final = 16  # a bin label longer than this is cut in the chart (whole in its tooltip and table)

# Geometry, in the viewBox's units; the SVG scales to its container's width.
_ROW: Final = 22
_LABEL_WIDTH: Final = 118
_BAR_WIDTH: Final = 196
_WIDTH: Final = 600
_HEIGHT: Final = 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 10, 10, 24


@dataclass(frozen=True)
class Series:
    """One line: ``values[i]`` at ``times[i]`` (Unix seconds); NaN is a gap."""

    name: str
    times: Floats
    values: Floats


def bins_chart(
    name: str,
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    chart_id: str,
) -> str:
    """A feature's reference and current share per bin, with a hidden table of the same numbers."""
    top = max([*reference, *current, 1e-12])
    rows = []
    for i, (label, ref, cur) in enumerate(zip(labels, reference, current, strict=True)):
        y = i * _ROW
        shown = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        rows.append(
            f"<g><title>{esc(label)}: reference {percent(ref)}, current {percent(cur)}</title>"
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">{esc(shown)}</text>'
            f'<rect x="{_LABEL_WIDTH}" y="{y + 3}" width="{_bar(ref, top)}" height="7" fill="{REFERENCE_COLOUR}"/>'
            f'<rect x="{_LABEL_WIDTH}" y="{y + 11}" width="{_bar(cur, top)}" height="7" fill="{CURRENT_COLOUR}"/></g>'
        )
    height = max(len(labels), 1) * _ROW + 4
    svg = (
        f'<svg class="bins" viewBox="0 0 {_LABEL_WIDTH + _BAR_WIDTH + 6} {height}" role="img" '
        f'aria-label="{esc(_bins_summary(name, labels, reference, current))}">{"".join(rows)}</svg>'
    )
    data = table(
        ("Bin", "Reference", "Current"),
        [(esc(label), percent(ref), percent(cur)) for label, ref, cur in zip(labels, reference, current, strict=True)],
        caption=f"{name}: share of values per bin",
        classes="bin-table",
    )
    return f'<div class="chart" id="{chart_id}-chart">{svg}<div class="visually-hidden">{data}</div></div>'


def _bar(share: float, top: float) -> str:
    return f"{_BAR_WIDTH * max(share, 0.0) / top:.1f}"


def _bins_summary(name: str, labels: Sequence[str], reference: Sequence[float], current: Sequence[float]) -> str:
    text = f"{name}: reference (grey) and current (blue) share of values in each of {len(labels)} bins"
    if not labels or not any(current):
        return text + "; no current values yet."
    moved = max(range(len(labels)), key=lambda i: abs(current[i] - reference[i]))
    before, after = percent(reference[moved]), percent(current[moved])
    return text + f"; the largest change is in bin {labels[moved]}, from {before} to {after}."


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    now: float,
    value: Callable[[float | None], str] = number,
    thresholds: Sequence[float] = (),
) -> str:
    """Lines over time on one scale from 0, with a legend; thresholds drawn dashed and grey."""
    lines = [s for s in series if len(s.times)]
    finite = [float(np.nanmax(s.values)) for s in lines if np.isfinite(s.values).any()]
    if not finite:
        return f'<p class="empty">{esc(title)}: no values yet.</p>'
    top = _nice(max([*finite, *thresholds]))
    start = min(float(s.times[0]) for s in lines)
    end = max(float(s.times[-1]) for s in lines)
    span = end - start or 1.0
    inner_w, inner_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + inner_w * ((t - start) / span if end > start else 1.0)

    def y(v: float) -> float:
        return _TOP + inner_h * (1.0 - v / top)

    parts = [f'<line class="axis" x1="{_LEFT}" y1="{y(0):.1f}" x2="{_WIDTH - _RIGHT}" y2="{y(0):.1f}"/>']
    for tick in (0.0, top / 2, top):
        parts.append(
            f'<text class="tick" x="{_LEFT - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{esc(value(tick))}</text>'
        )
    for threshold in thresholds:
        parts.append(
            f'<line class="threshold" x1="{_LEFT}" y1="{y(threshold):.1f}" x2="{_WIDTH - _RIGHT}" '
            f'y2="{y(threshold):.1f}"/>'
        )
    parts.append(f'<text class="tick" x="{_LEFT}" y="{_HEIGHT - 6}">{esc(ago(start, now))}</text>')
    parts.append(
        f'<text class="tick" x="{_WIDTH - _RIGHT}" y="{_HEIGHT - 6}" text-anchor="end">{esc(ago(end, now))}</text>'
    )
    for k, s in enumerate(lines):
        colour, dash = PALETTE[k % len(PALETTE)], DASHES[k % len(DASHES)]
        style = f'fill="none" stroke="{colour}" stroke-width="2"' + (f' stroke-dasharray="{dash}"' if dash else "")
        times, values = _thin(s.times, s.values)
        for segment in _segments(times, values):
            if len(segment) == 1:
                t, v = segment[0]
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>')
            else:
                points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in segment)
                parts.append(f'<polyline points="{points}" {style}/>')
    label = f"{title}. " + "; ".join(_line_summary(s, value) for s in lines) + "."
    svg = (
        f'<svg class="lines" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{esc(label)}">'
        f"{''.join(parts)}</svg>"
    )
    return f'<div class="chart">{svg}{legend([s.name for s in lines])}</div>'


def legend(names: Sequence[str]) -> str:
    """The key of a :func:`line_chart`: each name with its colour and dash."""
    items = []
    for k, name in enumerate(names):
        colour, dash = PALETTE[k % len(PALETTE)], DASHES[k % len(DASHES)]
        pattern = f' stroke-dasharray="{dash}"' if dash else ""
        items.append(
            f'<li><svg width="28" height="10" aria-hidden="true"><line x1="0" y1="5" x2="28" y2="5" '
            f'stroke="{colour}" stroke-width="3"{pattern}/></svg>{esc(name)}</li>'
        )
    return f'<ul class="legend">{"".join(items)}</ul>'


def sparkline(values: Floats, *, what: str) -> str:
    """A small trend line for a table cell, described in words for a screen reader."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return ""
    _, values = _thin(np.arange(len(values), dtype=np.float64), values)
    top = float(finite.max()) or 1.0
    step = 78 / max(len(values) - 1, 1)
    parts = [
        " ".join(f"{1 + i * step:.1f},{19 - 17 * v / top:.1f}" for i, v in segment)
        for segment in _segments(np.arange(len(values), dtype=np.float64), values)
    ]
    lines = "".join(f'<polyline points="{p}" fill="none" stroke="{CURRENT_COLOUR}" stroke-width="1.5"/>' for p in parts)
    first, last = number(float(finite[0])), number(float(finite[-1]))
    label = f"{what} over the last {len(finite)} evaluations: from {first} to {last}"
    return f'<svg class="spark" viewBox="0 0 80 20" role="img" aria-label="{esc(label)}">{lines}</svg>'


def interval_chart(
    estimate: float | None,
    low: float | None,
    high: float | None,
    *,
    what: str,
    value: Callable[[float | None], str] = number,
) -> str:
    """An estimate (a dot) and its interval (a bar) on a scale centred on 0 (a grey line), for a table cell.

    The scale is symmetric, so the side of 0 an interval lies on reads at a glance; nothing is drawn
    without an estimate and both bounds.
    """
    if estimate is None or low is None or high is None or not all(map(math.isfinite, (estimate, low, high))):
        return ""
    half = max(abs(estimate), abs(low), abs(high)) or 1.0

    def x(v: float) -> float:
        return 60 + 56 * v / half

    where = "lies above 0" if low > 0 else "lies below 0" if high < 0 else "includes 0"
    label = f"{what}: {value(estimate)}, interval {value(low)} to {value(high)}, which {where}"
    return (
        f'<svg class="interval" viewBox="0 0 120 20" role="img" aria-label="{esc(label)}">'
        '<line class="zero" x1="60" y1="1" x2="60" y2="19"/>'
        f'<line x1="{x(low):.1f}" y1="10" x2="{x(high):.1f}" y2="10" stroke="{CURRENT_COLOUR}" stroke-width="3"/>'
        f'<circle cx="{x(estimate):.1f}" cy="10" r="3.5" fill="{CURRENT_COLOUR}"/></svg>'
    )


def _line_summary(s: Series, value: Callable[[float | None], str]) -> str:
    finite = s.values[np.isfinite(s.values)]
    if not len(finite):
        return f"{s.name}: no values"
    latest, low, high = (value(float(v)) for v in (finite[-1], finite.min(), finite.max()))
    return f"{s.name}: latest {latest}, lowest {low}, highest {high}"


def _thin(times: Floats, values: Floats) -> tuple[Floats, Floats]:
    """At most :data:`MAX_POINTS` points, evenly strided, the newest always kept."""
    if len(times) <= MAX_POINTS:
        return times, values
    index = np.unique(np.append(np.linspace(0, len(times) - 1, MAX_POINTS).astype(int), len(times) - 1))
    return times[index], values[index]


def _segments(times: Floats, values: Floats) -> list[list[tuple[float, float]]]:
    """Runs of finite values: an unknown value breaks the line rather than drawing it as 0."""
    out: list[list[tuple[float, float]]] = []
    run: list[tuple[float, float]] = []
    for t, v in zip(times.tolist(), values.tolist(), strict=True):
        if math.isfinite(v):
            run.append((t, v))
        elif run:
            out.append(run)
            run = []
    if run:
        out.append(run)
    return out


def _nice(top: float) -> float:
    """The next round number above ``top`` (1, 2 or 5 times a power of ten), so the ticks read cleanly."""
    if top <= 0.0 or not math.isfinite(top):
        return 1.0
    power = 10.0 ** math.floor(math.log10(top))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= top)
