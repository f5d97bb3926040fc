"""The sections of the status page other than drift and the experiment: status, traffic, history, quality,
performance, alerts.

Each function renders one section from :class:`PageData`, the published
snapshots and counters gathered once per page. They format and arrange; the
figures were computed by the evaluators (the traffic's quantiles are read off
the latency histogram's bucket counts, as ``histogram_quantile`` does, and its
rates are differences of the request counters).

Usage::

    html = "".join(section(data) for section in (status_section, traffic_section, quality_section))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from sidecar.admin.charts import Series, line_chart
from sidecar.admin.experiment import decision_badge
from sidecar.admin.features import psi_history, verdict_badge
from sidecar.admin.history import HistoryView
from sidecar.admin.markup import NONE, ago, esc, number, percent, seconds, table, timestamp
from sidecar.alerting import Alert, Transition
from sidecar.alerting.source import histogram_quantile
from sidecar.drift.snapshot import DriftSnapshot
from sidecar.experiments.shadow import Outcome as MirrorOutcome
from sidecar.monitoring.evaluator import Snapshot
from sidecar.serving.metrics import ServingCounts

__all__ = [
    "RECENT_SECONDS",
    "PageData",
    "alerts_section",
    "history_section",
    "performance_section",
    "quality_section",
    "status_section",
    "traffic_section",
]

RECENT_SECONDS: Final = 300.0  # "now" for the traffic figures: the last five minutes, as the alert rules read them
MAX_VIOLATIONS: Final = 30  # (feature, check) rows shown; the rest are counted in one line
MAX_EXAMPLES: Final = 10
MAX_TRANSITIONS: Final = 10


@dataclass(frozen=True)
class PageData:
    """What one rendering of the page reads, gathered at ``now``.

    ``performance`` is the body of ``GET /api/v1/performance`` (its view, so
    that the page and the API read the labels snapshot the same way), and
    ``experiment`` the entry of ``GET /api/v1/experiments``, None without an
    experiment. ``serving`` is None where the request counters are not at
    hand, ``shadow`` (a shadow experiment's mirrors by outcome) where the
    mirror is not.
    """

    now: float
    model: str
    flags: Mapping[str, Any]
    data: Snapshot
    performance: Mapping[str, Any]
    active: Sequence[Alert]
    transitions: Sequence[Transition]
    serving: ServingCounts | None
    history: HistoryView
    experiment: Mapping[str, Any] | None = None
    shadow: Mapping[MirrorOutcome, int] | None = None


def status_section(d: PageData) -> str:
    """Health, readiness, the reference, the headline verdicts and the fallback flag.

    Readiness is the serving process's to say (in process mode this page is
    rendered by the monitoring process), so the page's script fills it in from
    ``/readyz``, the answer the probes get; without script, a link to it.
    """
    reference = d.data.reference
    version = reference.version or NONE
    if reference.source == "learning":
        version = f"learning from warm-up traffic ({reference.warmup_seen} of {reference.warmup_target})"
    drift = d.data.drift
    fallback = d.flags.get("use_fallback_model", {})
    firing = sum(1 for a in d.active if a.state == "firing")
    items = [
        ("Health", '<span class="ok">ok</span> (this page was answered)'),
        ("Readiness", '<span id="readiness"><a href="/readyz">/readyz</a></span>'),
        (
            "Reference",
            f'{esc(version)} <span class="sub">({esc(reference.source)}'
            + (f", created {esc(reference.created_at)}" if reference.created_at else "")
            + ")</span>"
            + (f'<br><span class="bad">{esc(reference.problem)}</span>' if reference.problem else ""),
        ),
        ("Drift", NONE if drift is None else _drift_card(drift)),
        (
            "Alerts",
            f'<span class="{"bad" if firing else "ok"}">{firing} firing</span>, {len(d.active) - firing} pending',
        ),
        (
            "Fallback model",
            ("in use" if fallback.get("value") else "not in use")
            + ("" if fallback.get("available") else " (none configured)"),
        ),
    ]
    if d.experiment is not None:
        items.append(("Experiment", _experiment_card(d.experiment)))
    cards = "".join(f'<div class="card"><dt>{name}</dt><dd>{value}</dd></div>' for name, value in items)
    return f'<section aria-labelledby="status-h"><h2 id="status-h">Status</h2><dl class="cards">{cards}</dl></section>'


def _experiment_card(entry: Mapping[str, Any]) -> str:
    """The experiment's name and its decision, or its status before (or without) an analysis."""
    analysis = entry["analysis"]
    state = entry["status"] if analysis is None else analysis["decision"]["decision"]
    return f'<a href="#experiment-h">{esc(entry["name"])}</a><br>{decision_badge(state)}'


def _drift_card(drift: DriftSnapshot) -> str:
    """The dataset verdict and how many features drift.

    Three of six features drifting is "no drift" for a dataset whose rule asks for more than
    half: the card says so, rather than read as if nothing moved.
    """
    judged = [f for f in drift.features if f.verdict != "insufficient_data"]
    if not judged:
        return f'{verdict_badge(drift.verdict)}<br><span class="sub">no feature has enough data yet</span>'
    drifted = sum(1 for f in judged if f.verdict == "drift")
    return (
        f"{verdict_badge(drift.verdict)}<br>"
        f'<span class="{"bad" if drifted else "sub"}">{drifted} of {len(judged)} features drift</span>'
        f'<span class="sub">; the dataset drifts above {number(drift.drift_share * 100)}%</span>'
    )


def traffic_section(d: PageData) -> str:
    """Requests, errors and latency per variant since start, and over the last five minutes."""
    if d.serving is None:
        return _section("traffic", "Traffic", '<p class="empty">The request counters are not available here.</p>')
    rows = []
    for variant, route in d.serving.routes.items():
        codes = dict(route.codes)
        counts = list(route.duration.counts)
        total = sum(codes.values())
        errors = sum(n for code, n in codes.items() if code >= 500)
        rows.append(
            (
                esc(variant),
                number(total),
                percent(errors / total if total else None),
                seconds(histogram_quantile(0.5, counts)),
                seconds(histogram_quantile(0.99, counts)),
            )
        )
    since_start = table(
        ("Variant", "Requests", "5xx", "p50 latency", "p99 latency"),
        rows,
        caption="Requests since the sidecar started",
        classes="traffic-table",
    )
    return _section("traffic", "Traffic", _recent(d) + since_start)


def _recent(d: PageData) -> str:
    h = d.history
    if len(h) < 2:
        return '<p class="lead">Rates over the last five minutes show after two evaluations.</p>'
    # The newest point, and the last one at least five minutes before it (else the oldest there is).
    base = int(np.searchsorted(h.times, h.times[-1] - RECENT_SECONDS, side="right")) - 1
    base = max(base, 0)
    span = float(h.times[-1] - h.times[base])
    requests = float(h.requests[-1] - h.requests[base])
    errors = float(h.errors[-1] - h.errors[base])
    window = (h.latency[-1] - h.latency[base]).astype(int).tolist()
    return (
        f'<p class="lead">Last {seconds(span)}: <strong>{number(requests / span if span else None)} requests/s</strong>'
        f" · 5xx {percent(errors / requests if requests else None)}"
        f" · p50 {seconds(histogram_quantile(0.5, window))} · p99 {seconds(histogram_quantile(0.99, window))}</p>"
    )


def history_section(d: PageData) -> str:
    """PSI per feature, the model's performance and the request rate, over the points the history holds."""
    h = d.history
    parts = ['<section aria-labelledby="history-h"><h2 id="history-h">History</h2>']
    if len(h) < 2:
        parts.append('<p class="empty">The history shows after two evaluations.</p></section>')
        return "".join(parts)
    parts.append(
        f'<p class="lead">{len(h)} evaluations, from {ago(float(h.times[0]), d.now)} to now; the page keeps the last '
        "ones in a bounded ring.</p>"
    )
    metrics = [Series(name, h.times, values) for name, values in h.metrics.items() if np.isfinite(values).any()]
    performance = (
        line_chart(metrics, title="Performance of the primary variant (realised, and estimated accuracy)", now=d.now)
        if metrics
        else '<p class="empty">No performance yet: it needs labels (or confidences, for the estimate).</p>'
    )
    dt = np.diff(h.times)
    rate = np.divide(np.diff(h.requests), dt, out=np.full(len(dt), np.nan), where=dt > 0)
    requests = line_chart([Series("requests/s", h.times[1:], rate)], title="Requests per second", now=d.now)
    charts = (
        ("history-psi-h", "Drift (PSI)", psi_history(h, d.now)),
        ("history-perf-h", "Performance", performance),
        ("history-traffic-h", "Requests per second", requests),
    )
    parts.append(
        '<div class="charts wide">'
        + "".join(f'<div><h3 id="{key}">{title}</h3>{chart}</div>' for key, title, chart in charts)
        + "</div>"
    )
    parts.append("</section>")
    return "".join(parts)


def quality_section(d: PageData) -> str:
    q = d.data.quality
    recent, volume, fresh = q.recent, q.volume, q.freshness
    facts = (
        f'<p class="lead">{number(q.records_total)} records checked. Last closed slice: '
        f"{percent(recent.bad_record_share)} of {number(recent.records)} records with a violation "
        f"({number(recent.violations_per_record)} per record). Volume: {esc(volume.verdict)} "
        f"({number(volume.actual_per_second)}/s, expected {number(volume.expected_per_second)}/s). "
        f"Newest record {ago(fresh.last_request, d.now)}, newest label {ago(fresh.last_label, d.now)}.</p>"
    )
    found = sorted(((n, f, c) for (f, c), n in q.violations.items() if n), reverse=True)
    if not found:
        return _section("quality", "Data quality", facts + '<p class="empty">No violations since start.</p>')
    shown = [(esc(f), esc(c), number(n)) for n, f, c in found[:MAX_VIOLATIONS]]
    more = len(found) - len(shown)
    violations = table(("Feature", "Check", "Violations"), shown, caption="Violations since start, most first")
    if more:
        violations += f'<p class="sub">and {more} more (feature, check) pairs; all in /api/v1/quality.</p>'
    examples = table(
        ("Feature", "Check", "Value", "Request", "When"),
        [
            (
                esc(e.feature),
                esc(e.check),
                esc(e.value if e.value is not None else NONE),
                esc(e.request_id),
                timestamp(e.timestamp),
            )
            for e in q.examples[:MAX_EXAMPLES]
        ],  # fmt: skip
        caption="Latest violations",
    )
    return _section("quality", "Data quality", facts + violations + (examples if q.examples else ""))


def performance_section(d: PageData) -> str:
    """Realised metrics per variant against the baseline, the estimated accuracy, label flow and retraining."""
    p = d.performance
    coverage = p.get("label_coverage") or {}
    labels = p.get("labels", {})
    retraining = p.get("retraining", {})
    baseline = retraining.get("baseline", {})
    facts = (
        f'<p class="lead">Task {esc(p.get("task"))}, over the last {seconds(p.get("window_seconds"))}; a metric '
        f"needs {number(p.get('min_labels'))} labels. Labels: "
        + ", ".join(f"{esc(k)} {number(v)}" for k, v in labels.items())
        + f". Coverage: {percent(coverage.get('share'))} of stored predictions have a label.</p>"
    )
    parts = [facts]
    for variant in p.get("variants", []):
        metrics: Mapping[str, Any] = variant.get("metrics", {})
        rows = [
            (
                esc(name),
                number(m.get("value")),
                esc(m.get("status", "").replace("_", " ")),
                number(m.get("samples")),
                number(baseline.get(name)),
            )
            for name, m in metrics.items()
        ]
        title = f"Variant {variant.get('variant')}: {variant.get('labelled')} labelled predictions"
        parts.append(table(("Metric", "Value", "Status", "Samples", "Baseline"), rows, caption=title))
    if not p.get("variants"):
        parts.append('<p class="empty">No labelled predictions yet (POST /api/v1/labels).</p>')
    estimated = p.get("estimated_accuracy", {})
    if estimated:
        items = ", ".join(
            f"{esc(v)}: {number(m.get('value'))} ({esc(m.get('status', '').replace('_', ' '))})"
            for v, m in estimated.items()
        )
        parts.append(f"<p>Estimated accuracy over all predictions, from the model's confidence: {items}.</p>")
    last = retraining.get("last_trigger")
    parts.append(
        f"<p>Model age {seconds(retraining.get('model_age_seconds'))}. Retraining: "
        + (
            f"last triggered {esc(last.get('timestamp'))} ({esc(last.get('reason'))}, {esc(last.get('outcome'))})"
            if last
            else "never triggered"
        )
        + (f"; next scheduled {esc(retraining['next_scheduled_at'])}" if retraining.get("next_scheduled_at") else "")
        + ".</p>"
    )
    return _section("performance", "Performance (delayed labels)", "".join(parts))


def alerts_section(d: PageData) -> str:
    """Active alerts with their context and runbook, then the latest changes of state."""
    parts = []
    if not d.active:
        parts.append('<p class="empty">No alert is pending or firing.</p>')
    for alert in d.active:
        parts.append(_alert(alert, d.now))
    if d.transitions:
        rows = [
            (
                esc(t.alert.name),
                f"{esc(t.previous)} → {esc(t.state)}",
                esc(t.alert.severity),
                timestamp(t.timestamp),
                esc(t.alert.summary) or NONE,
            )
            for t in list(reversed(d.transitions))[:MAX_TRANSITIONS]
        ]
        parts.append(table(("Alert", "Change", "Severity", "When", "Summary"), rows, caption="Latest changes"))
    return _section("alerts", "Alerts", "".join(parts))


def _alert(alert: Alert, now: float) -> str:
    context = alert.context or {}
    lines = [f"<p>{esc(alert.summary)}</p>"] if alert.summary else []
    if context.get("condition"):
        lines.append(f"<p>Condition: <code>{esc(context['condition'])}</code></p>")
    top = context.get("top_drift") or []
    if top:
        lines.append(
            "<p>Most drifted: " + ", ".join(f"{esc(t['feature'])} (PSI {number(t['psi'])})" for t in top) + "</p>"
        )
    change = context.get("model_version_change")
    if change:
        lines.append(f"<p>{esc(change.get('note', ''))}</p>")
    lines.append(f"<p>{_runbook(alert.rule.runbook)}</p>")
    return (
        f'<article class="alert {esc(alert.state)}" aria-label="{esc(alert.name)}">'
        f'<h3>{esc(alert.name)} <span class="sev">{esc(alert.severity)}</span> '
        f'<span class="state">{esc(alert.state)} since {ago(alert.since, now)}</span></h3>{"".join(lines)}</article>'
    )


def _runbook(link: str | None) -> str:
    if not link:
        return "No runbook."
    # Only web links become links: a rule file must not be able to put a javascript: URL on the page.
    if link.startswith(("https://", "http://")):
        return f'<a href="{esc(link)}" rel="noreferrer">Runbook</a>'
    return (
        f"Runbook: <code>{esc(link)}</code> (in the sidecar's documentation; set SIDECAR_RUNBOOK_BASE_URL to link it)"
    )


def _section(key: str, title: str, body: str) -> str:
    return f'<section aria-labelledby="{key}-h"><h2 id="{key}-h">{esc(title)}</h2>{body}</section>'
