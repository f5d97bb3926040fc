"""The experiment part of the status page: the decision, the arms, the effects, the checks, or the shadow's comparison.

It renders the entry of ``GET /api/v1/experiments`` (:func:`sidecar.experiments.api.experiments_json`),
so the page and the API read the runner's published snapshot the same way and
always show the same numbers; nothing is tested or estimated here. The one
comparison made is the one the API leaves to its reader: an adjusted p-value
against the experiment's α, to mark a significant row.

A split experiment's, by ``status``:

- ``evaluated``: the decision with its reason (and the units still needed
  while it is ``keep_running``), the arms, the sample-ratio checks (flagged
  below :data:`~sidecar.experiments.srm.SRM_ALPHA`), every tested metric per
  treatment (both arms' values, the difference and the relative lift with
  their intervals, p and adjusted p, novelty and Simpson), the guardrails,
  and each treatment's decision when there are several;
- ``pending``: the definition's arms, until the first analysis.

A shadow experiment's entry has its comparison in ``shadow``, not
``analysis``: once ``evaluated``, the pairing (its rate, the rows, the
challenger's answers by fate), each model's requests, 5xx share and p95, the
agreement with its interval (a classifier), the per-request score
differences, the PSI between the two models' predictions with its verdict,
each label metric of both models on the same requests with its paired test
and verdict, and the guardrails; ``pending`` before the first comparison, and
``not_analysed`` where no comparison runs. After that, in every state, the
mirrors' outcomes, when the page's process holds the counters (``shadow`` is
None where it does not: the monitoring process, which has no mirror).

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
_NOT_COMPARED: Final = (
    "Not analysed: no comparison of the two models runs here, so the mirrors are counted, not compared."
)
_COMPARE_PENDING: Final = (
    "No comparison yet: the first runs once the prediction store has been read, then every "
    "SIDECAR_EXPERIMENT_INTERVAL_SECONDS."
)
# How each paired test reads on the page (sidecar.experiments.shadow_snapshot.PAIRED_METHODS; None: no paired test).
_METHODS: Final = {"mcnemar": "McNemar", "paired_t": "paired t", None: "no paired test"}


def decision_badge(decision: str) -> str:
    """A decision or a status as words, coloured like the drift verdicts (the words say it without colour)."""
    return f'<span class="verdict v-{esc(decision)}">{esc(decision.replace("_", " "))}</span>'


def experiment_section(entry: Mapping[str, Any], *, shadow: Mapping[MirrorOutcome, int] | None) -> str:
    """The section for one entry of ``GET /api/v1/experiments``; ``shadow`` the mirrors' outcome counts, if held."""
    definition: Mapping[str, Any] = entry["definition"]
    analysis: Mapping[str, Any] | None = entry["analysis"]
    parts = [_facts(entry)]
    if definition["mode"] == "shadow":
        parts.append(_shadow(entry, shadow))
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
    else:
        facts.append(f"α {number(d['alpha'])}, {esc(d['correction'])} correction over the label metrics")
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
    low, high = _change(effect["ci_low"], kind), _change(effect["ci_high"], kind)
    return f'{_change(effect["difference"], kind)}<br><span class="sub">{low} to {high}</span>'


def _change(value: float | None, kind: str) -> str:
    """A difference between two values of a metric of ``kind``, signed."""
    if value is None:
        return NONE
    # A proportion's difference in percentage points, so that "+2 pp" is never read as a 2 % lift.
    if kind == "proportion":
        return _signed(value, number(value * 100)) + " pp"
    return _signed(value, number(value))


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
    rows = [(esc(g["name"]), esc(g["variant"]), *_guardrail(g, g["treatment"])) for g in guardrails]
    return table(
        ("Guardrail", "Treatment", "Control", "Treatment value", "Increase", "Allowed increase", "State"),
        rows,
        caption="Guardrails",
        classes="guardrail-table",
    )


def _guardrail(g: Mapping[str, Any], treated: float | None) -> tuple[str, ...]:
    """A guardrail's values: control's, ``treated`` (the treatment's or the challenger's), the increase, the
    allowed increase and whether it held."""
    show = percent if g["name"] == "error_rate" else _ms
    increase = g["increase"]
    return (
        show(g["control"]),
        show(treated),
        _signed(increase, show(increase)),
        show(g["max_increase"]),
        '<span class="bad">breached</span>' if g["breached"] else '<span class="ok">held</span>',
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


def _shadow(entry: Mapping[str, Any], outcomes: Mapping[MirrorOutcome, int] | None) -> str:
    definition: Mapping[str, Any] = entry["definition"]
    compared: Mapping[str, Any] | None = entry["shadow"]
    challenger = next(v for v in definition["variants"] if not v["control"])
    parts = []
    if compared is None:
        pending = entry["status"] == "pending"
        parts.append(_banner("pending", _COMPARE_PENDING) if pending else _banner("not_analysed", _NOT_COMPARED))
    parts.append(
        f"<p>Every client gets control's answer; a copy of each request goes to {esc(challenger['name'])} at "
        f"{_upstream(challenger['upstream'])}.</p>"
    )
    if compared is not None:
        parts += [
            _pairing(compared["pairing"]),
            _models(compared, definition),
            _likeness(compared),
            _score_differences(compared["differences"]),
            _paired_metrics(compared),
            _shadow_guardrails(compared["guardrails"]),
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


def _pairing(pairing: Mapping[str, Any]) -> str:
    answers = ", ".join(f"{esc(fate.replace('_', ' '))} {number(n)}" for fate, n in pairing["answers"].items())
    return (
        f'<p class="lead">Paired: <strong>{percent(pairing["rate"])}</strong> of control\'s '
        f"{number(pairing['control_rows'])} stored predictions have the challenger's beside them "
        f"({number(pairing['paired'])} pairs, {number(pairing['labelled'])} with a label).</p>"
        f'<p class="sub">The challenger\'s answers read here: {answers}.</p>'
    )


def _models(compared: Mapping[str, Any], definition: Mapping[str, Any]) -> str:
    upstreams = {v["name"]: v["upstream"] for v in definition["variants"]}
    rows = [
        (
            _arm_name(arm["name"], arm["control"]),
            number(arm["requests"]),
            percent(arm["error_rate"]),
            _ms(arm["latency_p95_ms"]),
            _upstream(upstreams.get(arm["name"])),
        )
        for arm in compared["arms"]
    ]
    return table(
        ("Model", "Requests", "5xx", "p95 latency", "Upstream"),
        rows,
        caption="Models: control over every request, the challenger over its answers",
        classes="arm-table",
    )


def _likeness(compared: Mapping[str, Any]) -> str:
    """How alike the two models answer: the agreement (a classifier) and the PSI between their predictions."""
    a, shift = compared["agreement"], compared["shift"]
    if a is None:
        agreement = ("Agreement", NONE, "the model does not predict classes")
    else:
        agreement = (
            "Agreement",
            f'{percent(a["rate"])}<br><span class="sub">{percent(a["ci_low"])} to {percent(a["ci_high"])}</span>',
            f"{number(a['agreed'])} of {number(a['n'])} pairs predict the same class "
            f"(Wilson's {number((1 - compared['alpha']) * 100)} % interval)",
        )
    psi = (
        "PSI",
        f"{number(shift['psi'])} {decision_badge(shift['verdict'])}",
        f"the challenger's predictions against control's, over {number(shift['bins'])} bins; "
        f"{number(shift['control'])} and {number(shift['challenger'])} predictions",
    )
    return table(("Measure", "Value", "Over"), [agreement, psi], caption="How alike", classes="likeness-table")


def _score_differences(d: Mapping[str, Any]) -> str:
    of = "confidences" if d["of"] == "confidence" else "predictions"
    rows = [
        (
            f'{of}<br><span class="sub">challenger − control</span>',
            number(d["n"]),
            *(_signed(d[key], number(d[key])) for key in ("mean", "p05", "p50", "p95")),
            number(d["mean_absolute"]),
            number(d["standard_deviation"]),
        )
    ]
    return table(
        ("Of", "Pairs", "Mean", "5th percentile", "Median", "95th percentile", "Mean absolute", "Standard deviation"),
        rows,
        caption="Differences per request",
        classes="difference-table",
    )


def _paired_metrics(compared: Mapping[str, Any]) -> str:
    metrics: Sequence[Mapping[str, Any]] = compared["metrics"]
    if not metrics:
        return '<p class="empty">No label metric defined.</p>'
    rows = []
    for m in metrics:
        kind = m["kind"]
        show = percent if kind == "proportion" else number
        # Only the paired t bounds the difference; McNemar's test has no interval.
        bounded = m["ci_low"] is not None and m["ci_high"] is not None
        rows.append(
            (
                f'{esc(m["name"])}<br><span class="sub">{esc(m["role"])}, {esc(kind)}, {_METHODS[m["method"]]}</span>',
                number(m["n"]) + _discordant(m["discordant"]),
                show(m["control"]),
                show(m["challenger"]),
                _difference(m, kind) if bounded else _change(m["difference"], kind),
                number(m["pvalue"]),
                number(m["pvalue_adjusted"]),
                decision_badge(m["verdict"]),
            )
        )
    return table(
        ("Metric", "Labelled pairs", "Control", "Challenger", "Difference (interval)", "p", "Adjusted p", "Verdict"),
        rows,
        caption=(
            f"Label metrics of both models on the same labelled requests ({esc(compared['correction'])} correction, "
            f"{number((1 - compared['alpha']) * 100)} % intervals)"
        ),
        classes="shadow-effect-table",
    )


def _discordant(pairs: Mapping[str, Any] | None) -> str:
    if pairs is None:
        return ""
    return (
        f'<br><span class="sub">discordant: control only {number(pairs["control_only"])}, challenger only '
        f"{number(pairs['challenger_only'])}</span>"
    )


def _shadow_guardrails(guardrails: Sequence[Mapping[str, Any]]) -> str:
    if not guardrails:
        return '<p class="empty">No guardrails defined.</p>'
    return table(
        ("Guardrail", "Control", "Challenger", "Increase", "Allowed increase", "State"),
        [(esc(g["name"]), *_guardrail(g, g["challenger"])) for g in guardrails],
        caption="Guardrails",
        classes="guardrail-table",
    )


def _ms(value: float | None) -> str:
    return NONE if value is None else f"{number(value)} ms"


def _time(text: str) -> str:
    return f'<time datetime="{esc(text)}">{esc(text)}</time>'
