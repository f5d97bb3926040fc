"""The experiment part of the status page: the decision, the arms, the effects, the checks, or the shadow's mirrors.

It renders the entry of ``GET /api/v1/experiments`` (:func:`sidecar.experiments.api.experiments_json`),
so the page and the API read the runner's published snapshot the same way and
always show the same numbers; nothing is tested or estimated here. The one
comparison made is the one the API leaves to its reader: an adjusted p-value
against the experiment's α, to mark a significant row.

By ``status``:

- ``evaluated``: the decision with its reason (and the units still needed
  while it is ``keep_running``), the arms, the sample-ratio checks (flagged
  below :data:`~sidecar.experiments.srm.SRM_ALPHA`), every tested metric per
  treatment (both arms' values, the difference and the relative lift with
  their intervals, p and adjusted p, novelty and Simpson), the guardrails,
  and each treatment's decision when there are several;
- ``pending``: the definition's arms, until the first analysis;
- ``not_analysed`` (shadow mode): the challenger and the mirrors' outcomes,
  when the page's process holds the counters (``shadow`` is None where it
  does not: the monitoring process, which has no mirror).

Usage::

    [entry] = experiments_json(runner, experiment)["experiments"]
    html = experiment_section(entry, shadow=None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sidecar.admin.charts import interval_chart
from sidecar.admin.markup import NONE, esc, number, percent, table
from sidecar.experiments.shadow import Outcome as MirrorOutcome

__all__ = ["SRM_ALPHA", "decision_badge", "experiment_section"]

# The sample-ratio test's level (sidecar.experiments.srm.SRM_ALPHA; a test holds them equal). Not imported: that
# module loads scipy, which rendering never needs.
SRM_ALPHA: Final = 0.001

# What the decision's named treatments are to have done to them.
_ACTIONS: Final = {"roll_out": "Roll out", "revert": "Revert"}
_NOT_BUILT: Final = (
    "Not analysed: pairing the challenger's answers with control's is not built yet, so the mirrors are counted, "
    "not compared."
)


def decision_badge(decision: str) -> str:
    """A decision or a status as words, coloured like the drift verdicts (the words say it without colour)."""
    return f'<span class="verdict v-{esc(decision)}">{esc(decision.replace("_", " "))}</span>'


def experiment_section(entry: Mapping[str, Any], *, shadow: Mapping[MirrorOutcome, int] | None) -> str:
    """The section for one entry of ``GET /api/v1/experiments``; ``shadow`` the mirrors' outcome counts, if held."""
    definition: Mapping[str, Any] = entry["definition"]
    analysis: Mapping[str, Any] | None = entry["analysis"]
    parts = [_facts(entry)]
    if definition["mode"] == "shadow":
        parts.append(_shadow(definition, shadow))
    elif analysis is None:
        parts.append(
            _banner(
                "pending",
                "No analysis yet: the first runs once the prediction store has been read, then every "
                "SIDECAR_EXPERIMENT_INTERVAL_SECONDS.",
            )
        )
        parts.append(_planned_arms(definition))
    else:
        parts.append(_decision(analysis))
        parts.append(_arms(analysis, definition))
        parts.append(_ratios(analysis))
        parts.append(_metrics(analysis))
        parts.append(_guardrails(analysis))
        if len(analysis["decisions"]) > 1:
            parts.append(_decisions(analysis))
    failures = {reason: n for reason, n in entry["failures"].items() if n}
    if failures:
        counts = ", ".join(f"{esc(reason)} {number(n)}" for reason, n in failures.items())
        parts.append(f'<p class="bad">Analyses that kept the previous one: {counts} (see the sidecar\'s log).</p>')
    return f'<section aria-labelledby="experiment-h"><h2 id="experiment-h">Experiment</h2>{"".join(parts)}</section>'


def _facts(entry: Mapping[str, Any]) -> str:
    d = entry["definition"]
    mode = d["mode"]
    facts = [f'<strong class="name">{esc(entry["name"])}</strong>, {esc(mode)} mode']
    if mode == "split":
        key = d["assignment_key"]
        facts.append(f"assigned by <code>{esc(key)}</code>" if key else "assigned by a coin per request")
        facts.append(
            f"α {number(d['alpha'])}, {esc(d['correction'])} correction, power {number(d['power'])}, "
            f"mde {number(d['mde'])}, "
            + ("sequential (always-valid) intervals" if d["sequential"] else "fixed-horizon intervals")
        )
        if d["segment_by"]:
            facts.append(f"segments by <code>{esc(d['segment_by'])}</code>")
    times = [f"status {decision_badge(entry['status'])}"]
    if entry["started_at"]:
        times.append(f"started {_time(entry['started_at'])}")
    if entry["evaluated_at"]:
        times.append(f"analysed {_time(entry['evaluated_at'])}")
    return f'<p class="lead">{" · ".join(facts)}.</p><p class="sub">{" · ".join(times)}</p>'


def _banner(decision: str, reason: str, extra: str = "") -> str:
    return f'<div class="decision d-{esc(decision)}"><p>{decision_badge(decision)}</p><p>{esc(reason)}</p>{extra}</div>'


def _decision(analysis: Mapping[str, Any]) -> str:
    decision = analysis["decision"]
    name = decision["decision"]
    named = decision["variants"]
    action = _ACTIONS.get(name)
    extra = ""
    if named and action:
        extra += f"<p>{action}: {', '.join(map(esc, named))}.</p>"
    if decision["remaining"]:
        extra += f"<p>Units still needed: {_pair(decision['remaining'])}.</p>"
    return _banner(name, decision["reason"], extra)


def _pair(pair: Mapping[str, int]) -> str:
    """Units per arm still needed: ``{"control": n, "treatment": m}``, in words."""
    control, treatment = pair["control"], pair["treatment"]
    if control == treatment:
        return f"{number(control)} more per arm"
    return f"{number(control)} more for control, {number(treatment)} for the treatment"


def _planned_arms(definition: Mapping[str, Any]) -> str:
    rows = [
        (_arm_name(v["name"], v["control"]), number(v["weight"]), _upstream(v["upstream"]))
        for v in definition["variants"]
    ]
    return table(("Arm", "Weight", "Upstream"), rows, caption="Arms", classes="arm-table")


def _arms(analysis: Mapping[str, Any], definition: Mapping[str, Any]) -> str:
    upstreams = {v["name"]: v["upstream"] for v in definition["variants"]}
    rows = [
        (
            _arm_name(arm["name"], arm["control"]),
            number(arm["weight"]),
            number(arm["routed"]["keyed"]),
            number(arm["routed"]["randomised"]),
            number(arm["captured_units"]),
            number(arm["requests"]),
            percent(arm["error_rate"]),
            _ms(arm["latency_p95_ms"]),
            _upstream(upstreams.get(arm["name"])),
        )
        for arm in analysis["arms"]
    ]
    return table(
        ("Arm", "Weight", "Routed by unit", "Routed by coin", "Captured units", "Requests", "5xx", "p95 latency",
         "Upstream"),
        rows,
        caption="Arms",
        classes="arm-table",
    )  # fmt: skip


def _arm_name(name: str, control: bool) -> str:
    return esc(name) + (' <span class="sub">(control)</span>' if control and name != "control" else "")


def _upstream(url: str | None) -> str:
    return "the primary upstream" if url is None else f"<code>{esc(url)}</code>"


def _ratios(analysis: Mapping[str, Any]) -> str:
    names = [arm["name"] for arm in analysis["arms"]]
    rows = []
    for stage, check in analysis["srm"].items():
        observed = ", ".join(f"{esc(n)} {number(o)}" for n, o in zip(names, check["observed"], strict=True))
        if check["pvalue"] is None:
            verdict = '<span class="sub">no units to test yet</span>'
        elif check["mismatch"]:
            verdict = f'<span class="bad">mismatch: p &lt; {SRM_ALPHA:g}, the arms are not comparable</span>'
        else:
            verdict = '<span class="ok">as the weights say</span>'
        rows.append((esc(stage), observed, number(check["statistic"]), number(check["pvalue"]), verdict))
    return table(
        ("Stage", "Units per arm", "χ²", "p", "Sample ratio"),
        rows,
        caption="Sample ratio against the weights",
        classes="srm-table",
    )


def _metrics(analysis: Mapping[str, Any]) -> str:
    alpha = analysis["alpha"]
    control = next(arm["name"] for arm in analysis["arms"] if arm["control"])
    rows = []
    for metric in analysis["metrics"]:
        kind = metric["kind"]
        arms = {arm["variant"]: arm for arm in metric["arms"]}
        for effect in metric["effects"]:
            treated = effect["variant"]
            adjusted = effect["pvalue_adjusted"]
            significant = adjusted is not None and adjusted < alpha
            rows.append(
                (
                    f'{esc(metric["name"])}<br><span class="sub">{esc(metric["role"])}, {esc(kind)}</span>',
                    esc(treated),
                    _moments(arms[control], kind),
                    _moments(arms[treated], kind),
                    _difference(effect, kind),
                    _lift(effect),
                    number(effect["pvalue"]),
                    f'<span class="{"ok" if significant else "sub"}">{number(adjusted)}</span>',
                    _notes(effect, significant, alpha),
                )
            )
    if not rows:
        return '<p class="empty">No metric has been compared yet.</p>'
    return table(
        ("Metric", "Treatment", "Control", "Treatment value", "Difference (interval)", "Relative lift (interval)",
         "p", "Adjusted p", "Notes"),
        rows,
        caption=f"Metrics against control ({number((1 - alpha) * 100)} % intervals)",
        classes="effect-table",
    )  # fmt: skip


def _moments(arm: Mapping[str, Any], kind: str) -> str:
    mean = percent(arm["mean"]) if kind == "proportion" else number(arm["mean"])
    return f'{mean}<br><span class="sub">n {number(arm["n"])}</span>'


def _difference(effect: Mapping[str, Any], kind: str) -> str:
    # A proportion's difference in percentage points, so that "+2 pp" is never read as a 2 % lift.
    scale, unit = (100.0, " pp") if kind == "proportion" else (1.0, "")

    def show(value: float | None) -> str:
        return NONE if value is None else _signed(value, number(value * scale)) + unit

    low, high = effect["ci_low"], effect["ci_high"]
    return f'{show(effect["difference"])}<br><span class="sub">{show(low)} to {show(high)}</span>'


def _lift(effect: Mapping[str, Any]) -> str:
    lift, low, high = effect["lift"], effect["lift_ci_low"], effect["lift_ci_high"]

    def show(value: float | None) -> str:
        return _signed(value, percent(value))

    chart = interval_chart(lift, low, high, what="relative lift", value=show)
    return f'{show(lift)}<br><span class="sub">{show(low)} to {show(high)}</span>{chart}'


def _signed(value: float | None, text: str) -> str:
    """``text``, ``value`` formatted, with a plus sign when ``value`` is above 0 (a negative one has its own)."""
    return "+" + text if value is not None and value > 0 else text


def _notes(effect: Mapping[str, Any], significant: bool, alpha: float) -> str:
    notes = [f"significant at α {number(alpha)}" if significant else "not significant"]
    # How far from detecting its mde matters only while the metric is not yet significant.
    if effect["remaining"] and not significant:
        notes.append(f"its mde needs {_pair(effect['remaining'])}")
    if effect["mde_now"] is not None:
        notes.append(f"detectable now: {number(effect['mde_now'])}")
    novelty = effect["novelty"]
    if novelty is not None and novelty["flagged"]:
        notes.append(f'<span class="bad">novelty: the effect fades over time (p {number(novelty["pvalue"])})</span>')
    simpson = effect["simpson"]
    if simpson is not None and simpson["flagged"]:
        notes.append('<span class="bad">Simpson: the segments disagree with the pooled effect</span>')
    return "<br>".join(notes)


def _guardrails(analysis: Mapping[str, Any]) -> str:
    guardrails: Sequence[Mapping[str, Any]] = analysis["guardrails"]
    if not guardrails:
        return '<p class="empty">No guardrails defined.</p>'
    rows = []
    for g in guardrails:
        show = percent if g["name"] == "error_rate" else _ms
        increase = g["increase"]
        rows.append(
            (
                esc(g["name"]),
                esc(g["variant"]),
                show(g["control"]),
                show(g["treatment"]),
                _signed(increase, show(increase)),
                show(g["max_increase"]),
                '<span class="bad">breached</span>' if g["breached"] else '<span class="ok">held</span>',
            )
        )
    return table(
        ("Guardrail", "Treatment", "Control", "Treatment value", "Increase", "Allowed increase", "State"),
        rows,
        caption="Guardrails",
        classes="guardrail-table",
    )


def _decisions(analysis: Mapping[str, Any]) -> str:
    rows = [
        (
            esc(d["variant"]),
            decision_badge(d["decision"]),
            esc(d["reason"]),
            NONE if d["remaining"] is None else _pair(d["remaining"]),
        )
        for d in analysis["decisions"]
    ]
    return table(("Treatment", "Decision", "Reason", "Units still needed"), rows, caption="Each treatment's decision")


def _shadow(definition: Mapping[str, Any], outcomes: Mapping[MirrorOutcome, int] | None) -> str:
    challenger = next(v for v in definition["variants"] if not v["control"])
    parts = [
        _banner("not_analysed", _NOT_BUILT),
        f"<p>Every client gets control's answer; a copy of each request goes to {esc(challenger['name'])} at "
        f"{_upstream(challenger['upstream'])}.</p>",
    ]
    if outcomes is None:
        parts.append(
            '<p class="empty">The mirrors are counted by the serving process: '
            '<code>mlsidecar_shadow_requests_total</code> on <a href="/metrics">/metrics</a>.</p>'
        )
    else:
        rows = [(esc(outcome.replace("_", " ")), number(n)) for outcome, n in outcomes.items()]
        parts.append(table(("Outcome", "Mirrors"), rows, caption="Mirrors to the challenger", classes="shadow-table"))
    return "".join(parts)


def _ms(value: float | None) -> str:
    return NONE if value is None else f"{number(value)} ms"


def _time(text: str) -> str:
    return f'<time datetime="{esc(text)}">{esc(text)}</time>'
