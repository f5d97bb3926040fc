"""The drift part of the status page: the features by score, and each one's distribution against the reference.

Everything comes from one :class:`~sidecar.drift.DriftSnapshot`, the same
object ``GET /api/v1/drift`` serialises, so the page and the API always show
the same numbers. The bins are named by ``DriftResult.labels``, the names the
API gives them (their edges, or the categories), never by a formatter of the
page's own.

Order: the worst verdict first (``drift``, ``moderate``, ``no_drift``, then
``insufficient_data``), and within a verdict the highest PSI first.

Usage::

    drift_section(monitors.snapshot, history.view())
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from sidecar.admin.charts import Series, bins_chart, line_chart, sparkline
from sidecar.admin.history import Floats, HistoryView
from sidecar.admin.markup import NONE, esc, number, percent, table, timestamp
from sidecar.drift import PSI_DRIFT, PSI_MODERATE, DriftResult, DriftSnapshot, MethodResult
from sidecar.monitoring.evaluator import Snapshot

__all__ = ["VERDICT_ORDER", "drift_section", "psi_history", "ranked", "verdict_badge"]

VERDICT_ORDER: Final = ("drift", "moderate", "no_drift", "insufficient_data")
TOP_LINES: Final = 5  # features drawn in the PSI history: more lines than this is a tangle


def ranked(results: Sequence[DriftResult]) -> list[DriftResult]:
    """Worst verdict first, then the highest PSI; a feature without a score last within its verdict."""

    def key(result: DriftResult) -> tuple[int, float]:
        rank = VERDICT_ORDER.index(result.verdict) if result.verdict in VERDICT_ORDER else len(VERDICT_ORDER)
        psi = _psi(result)
        return rank, math.inf if psi is None else -psi

    return sorted(results, key=key)


def verdict_badge(verdict: str) -> str:
    """The verdict as words, with a colour that only repeats what the words say."""
    return f'<span class="verdict v-{esc(verdict)}">{esc(verdict.replace("_", " "))}</span>'


def drift_section(snapshot: Snapshot, history: HistoryView) -> str:
    drift = snapshot.drift
    parts = ['<section aria-labelledby="drift-h"><h2 id="drift-h">Drift</h2>']
    if drift is None:
        parts.append(f'<p class="empty">{esc(_why_no_drift(snapshot))}</p></section>')
        return "".join(parts)
    parts.append(_summary(drift))
    features = ranked(drift.features)
    parts.append(_table(features, history.psi, caption="Features, worst first", anchor="f", cls="feature-table"))
    parts.append('<h3 id="distributions-h">Distributions: reference against the current window</h3>')
    parts.append(
        '<p class="key"><span class="swatch ref" aria-hidden="true"></span>reference '
        '<span class="swatch cur" aria-hidden="true"></span>current window</p>'
    )
    parts.append(_charts(features, cls="feature-chart", anchor="f"))
    outputs = [*ranked(drift.outputs), *([drift.label] if drift.label is not None else [])]
    if outputs:
        parts.append('<h3 id="outputs-h">Model outputs and labels</h3>')
        parts.append(
            # The history keeps the features' PSI only: an output row has no trend, even one named like a feature.
            _table(outputs, {}, caption="Model outputs and labels, worst first", anchor="o", cls="output-table")
        )
        parts.append(_charts(outputs, cls="output-chart", anchor="o"))
    parts.append("</section>")
    return "".join(parts)


def psi_history(history: HistoryView, now: float) -> str:
    """The PSI over time of the features that are worst now (at most :data:`TOP_LINES`), with the thresholds."""
    latest = []
    for name, values in history.psi.items():
        finite = values[np.isfinite(values)]
        if len(finite):
            latest.append((float(finite[-1]), name))
    top = [name for _, name in sorted(latest, reverse=True)[:TOP_LINES]]
    series = [Series(name, history.times, history.psi[name]) for name in top]
    title = f"PSI of the {len(top)} most drifted features; dashed: {PSI_MODERATE} (moderate) and {PSI_DRIFT} (drift)"
    return line_chart(series, title=title, now=now, thresholds=(PSI_MODERATE, PSI_DRIFT))


def _summary(drift: DriftSnapshot) -> str:
    judged = [r for r in drift.features if r.verdict != "insufficient_data"]
    drifted = sum(1 for r in judged if r.verdict == "drift")
    rule = drift.rule
    if rule.name == "combined":
        how = (
            f"a feature drifts when its test's Holm-corrected p is below {number(rule.alpha)} and its effect is "
            f"at least {number(rule.wasserstein)} (normed Wasserstein, for a number) or "
            f"{number(rule.jensenshannon)} (Jensen–Shannon distance, for a category), or when its PSI is above "
            f"{PSI_DRIFT}"
        )
    else:
        how = f"a feature drifts when its PSI is above {PSI_DRIFT}, moderately above {PSI_MODERATE}"
    return (
        f'<p class="lead">Dataset: {verdict_badge(drift.verdict)} · {drifted} of {len(judged)} features with '
        f"enough data drifted ({percent(drift.drifted_share)}; the dataset drifts above "
        f"{percent(drift.drift_share, 0)}) · window {timestamp(drift.window_start)} to "
        f"{timestamp(drift.window_end)}, evaluated {timestamp(drift.evaluated_at)}</p>"
        f'<p class="sub">Verdict rule <code>{esc(rule.name)}</code>: {esc(how)}.</p>'
    )


def _table(results: Sequence[DriftResult], trends: Mapping[str, Floats], *, caption: str, anchor: str, cls: str) -> str:
    rows = []
    for i, result in enumerate(results):
        trend = trends.get(result.name)
        rows.append(
            (
                f'<a href="#{anchor}-{i}">{esc(result.name)}</a>',
                verdict_badge(result.verdict),
                f'<span class="psi">{number(_psi(result))}</span>',
                "<br>".join(_test(m) for m in result.methods if m.method != "psi") or NONE,
                number(result.stats.count)
                + f'<span class="sub"> (effective {number(result.effective_samples)})</span>',
                esc(result.kind),
                "" if trend is None else sparkline(trend, what=f"PSI of {result.name}"),
            )
        )
    return table(
        ("Name", "Verdict", "PSI", "Tests", "Values in window", "Kind", "PSI trend"),
        rows,
        caption=caption,
        classes=f"drift-table {cls}",
    )


def _charts(results: Sequence[DriftResult], *, cls: str, anchor: str) -> str:
    figures = []
    for i, result in enumerate(results):
        figures.append(
            f'<figure class="{cls}" id="{anchor}-{i}" data-name="{esc(result.name)}">'
            f'<figcaption><span class="name">{esc(result.name)}</span> {verdict_badge(result.verdict)} '
            f"PSI {number(_psi(result))}</figcaption>"
            f"{bins_chart(result.name, result.labels, result.reference, result.current, chart_id=f'{anchor}-{i}')}"
            "</figure>"
        )
    return f'<div class="charts">{"".join(figures)}</div>'


def _test(method: MethodResult) -> str:
    if method.score is None:
        return f"{esc(method.method)}: {NONE}"
    p = "" if method.pvalue is None else f", p {number(method.pvalue)}"
    if method.corrected_pvalue is not None:
        p += f" (Holm {number(method.corrected_pvalue)})"
    return f"{esc(method.method)} {number(method.score)}{p}: {esc(method.verdict.replace('_', ' '))}"


def _psi(result: DriftResult) -> float | None:
    psi = result.method("psi")
    return None if psi is None else psi.score


def _why_no_drift(snapshot: Snapshot) -> str:
    status = snapshot.reference
    if status.source == "learning":
        return (
            f"Learning the reference from warm-up traffic: {status.warmup_seen} of {status.warmup_target} "
            "records. Drift is measured once it is learned."
        )
    if status.problem:
        return f"Drift is off: {status.problem}"
    return "Drift is off: there is no reference profile."
