"""The status page's experiment section, rendered by a real admin app on uvicorn over a real runner and store.

Each experiment's data is built by ``tests/experiments/scenario.py`` (users per
arm, their conversions, the proxy's counters), analysed by the real
:class:`~sidecar.experiments.runner.ExperimentRunner` over a real SQLite store,
and the page is read over HTTP. A shadow experiment's comparison is made by the
real :class:`~sidecar.experiments.shadow_runner.ShadowRunner` over real mirrors
to a real challenger (``tests/experiments/test_shadow_runner.py``'s wiring). Its numbers are held to the body of
``GET /api/v1/experiments`` for the same runner, as the page's own view of it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from sidecar.admin import experiment as section
from sidecar.admin.app import create_admin_app
from sidecar.admin.markup import number, percent
from sidecar.assembly import build_alerting, build_components
from sidecar.config import Settings
from sidecar.experiments import srm
from sidecar.experiments.api import experiments_json
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.runner import ExperimentRunner
from sidecar.experiments.shadow import OUTCOMES, Outcome
from sidecar.experiments.shadow_runner import ShadowRunner
from sidecar.performance import PerformanceConfig
from sidecar.prometheus import create_registry
from sidecar.serving.flags import Flags
from sidecar.serving.metrics import ProxyMetrics
from sidecar.store import LabelItem
from tests.experiments.scenario import MODEL, definition, exposures, routing, served, serving
from tests.experiments.test_shadow_runner import REQUESTS, experiment_of, serve, truth, wired, x_of
from tests.http import raw_request
from tests.servers import run_server
from tests.store.support import T0, Clock, opened
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

SHADOW = experiment_from_mapping(
    {
        "name": "shadow-v2",
        "mode": "shadow",
        "variants": {"control": {}, "challenger": {"upstream": "http://ml:hunter2@challenger:8080"}},
        "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
        "mde": 0.02,
    }
)


async def render(
    tmp_path: Path,
    experiment: Experiment | None,
    runner: ExperimentRunner | ShadowRunner | None = None,
    shadow_outcomes: Callable[[], Mapping[Outcome, int]] | None = None,
) -> str:
    """``GET /`` of an admin app built as the assembly builds it, with the experiment's arguments."""
    env = {"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9", "SIDECAR_STATE_DIR": str(tmp_path / "state")}
    settings = Settings.from_env({**env, "SIDECAR_MODEL_NAME": MODEL})
    parts = build_components(settings)
    serving_counts, flags = ProxyMetrics(MODEL, ("primary",)), Flags(fallback_available=False)
    app = create_admin_app(
        create_registry(MODEL, max_series=10_000),
        None,
        parts.monitors,
        parts.labels,
        parts.performance,
        build_alerting(settings, parts, serving_counts, flags, "primary").engine,
        flags,
        admin_token=None,
        labels_max_bytes=1 << 20,
        experiment=experiment,
        experiments=runner,
        shadow_outcomes=shadow_outcomes,
    )
    async with run_server(app) as port:
        response = await raw_request(port, "GET", "/")
    assert response.status == 200, response
    return response.body.decode()


@asynccontextmanager
async def analysed(
    tmp_path: Path,
    experiment: Experiment,
    users: dict[str, int],
    rates: dict[str, float],
    errors: dict[str, int] | None = None,
) -> AsyncIterator[ExperimentRunner]:
    """A runner whose first analysis has run over ``users`` per arm converting at ``rates``."""
    records = exposures(users)
    _, servings = serving(errors)
    async with opened(tmp_path / "store", buffer_rows=5_000) as store:
        await served(store, experiment, records, rates)
        runner = ExperimentRunner(
            store,
            experiment,
            PerformanceConfig(task="classification", min_labels=1),
            routing=lambda: routing(records),
            serving=lambda: servings,
            model=MODEL,
            clock=Clock(T0),
        )
        assert await runner.evaluate() is not None
        yield runner


def part(html: str, start: str, end: str = "</section>") -> str:
    """The markup from ``start`` up to the next ``end``."""
    assert start in html, start
    return html.split(start, 1)[1].split(end, 1)[0]


def cells(html: str, table_class: str) -> list[list[list[str]]]:
    """Each body row of the table with ``table_class``: the words of each of its cells."""
    body = part(html, f'class="{table_class}"', "</tbody>").split("<tbody>", 1)[1]
    return [
        [unescape(re.sub(r"<[^>]+>", " ", cell)).split() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def signed(text: str) -> str:
    """A positive number's text as the page writes it, with its sign."""
    return text if text.startswith("-") else "+" + text


def entry(runner: ExperimentRunner | ShadowRunner | None, experiment: Experiment) -> dict[str, Any]:
    body: dict[str, Any] = experiments_json(runner, experiment)["experiments"][0]
    return body


async def test_an_analysed_experiment_shows_its_decision_arms_checks_and_effects(tmp_path: Path) -> None:
    experiment = definition()
    async with analysed(
        tmp_path, experiment, {"control": 400, "treatment": 400}, {"control": 0.1, "treatment": 0.3}
    ) as runner:
        html = await render(tmp_path, experiment, runner)
        api = entry(runner, experiment)
    analysis = api["analysis"]
    assert analysis["decision"]["decision"] == "roll_out"
    body = part(html, '<h2 id="experiment-h">Experiment</h2>')
    # The section is in the navigation, and the status cards name the experiment and its decision.
    assert '<li><a href="#experiment-h">Experiment</a></li>' in html
    status = part(html, 'id="status-h"')
    assert '<a href="#experiment-h">ranker-v2</a><br><span class="verdict v-roll_out">roll out</span>' in status
    assert '<a href="/api/v1/experiments">' in html

    # The decision first, coloured as a verdict, with its reason and the treatment to roll out.
    banner = part(body, '<div class="decision d-roll_out">', "</div>")
    assert '<span class="verdict v-roll_out">roll out</span>' in banner
    assert unescape(re.sub(r"<[^>]+>", "", banner)).count(analysis["decision"]["reason"]) == 1
    assert "Roll out: treatment." in banner
    assert "Units still needed" not in body

    # Per arm: weight, routed, captured units, requests, 5xx share and p95, as the API gives them.
    arms = cells(body, "arm-table")
    for row, arm in zip(arms, analysis["arms"], strict=True):
        assert row[0][0] == arm["name"]
        assert row[1:8] == [
            [number(arm["weight"])],
            [number(arm["routed"]["keyed"])],
            [number(arm["routed"]["randomised"])],
            [number(arm["captured_units"])],
            [number(arm["requests"])],
            percent(arm["error_rate"]).split(),
            [number(arm["latency_p95_ms"]), "ms"],
        ]
    assert [row[0] for row in arms] == [["control"], ["treatment"]]

    # Both sample-ratio checks: every request was routed by its user, so only capture has units to test.
    ratios = cells(body, "srm-table")
    assert [row[0] for row in ratios] == [["assignment"], ["capture"]]
    assert analysis["srm"]["assignment"]["pvalue"] is None
    assert (ratios[0][3], " ".join(ratios[0][4])) == (["–"], "no units to test yet")
    assert (ratios[1][3], " ".join(ratios[1][4])) == (
        [number(analysis["srm"]["capture"]["pvalue"])],
        "as the weights say",
    )
    assert ratios[1][1] == ["control", "400,", "treatment", "400"]

    # The metric: both arms' values, the difference in points and the lift, each with its interval, p and adjusted p.
    (metric,) = analysis["metrics"]
    (effect,) = metric["effects"]
    (row,) = cells(body, "effect-table")
    control, treatment = metric["arms"]
    assert row[0] == ["conversion", "primary,", "proportion"]
    assert row[1] == ["treatment"]
    assert row[2] == [*percent(control["mean"]).split(), "n", number(control["n"])]
    assert row[3] == [*percent(treatment["mean"]).split(), "n", number(treatment["n"])]
    points = [signed(number(effect[key] * 100)) + " pp" for key in ("difference", "ci_low", "ci_high")]
    assert " ".join(row[4]) == f"{points[0]} {points[1]} to {points[2]}"
    lifts = [signed(percent(effect[key])) for key in ("lift", "lift_ci_low", "lift_ci_high")]
    assert " ".join(row[5]) == f"{lifts[0]} {lifts[1]} to {lifts[2]}"
    assert (row[6], row[7]) == ([number(effect["pvalue"])], [number(effect["pvalue_adjusted"])])
    assert row[8][:4] == ["significant", "at", "α", "0.05"]
    # The lift's interval drawn beside it, above 0, and said in words.
    (label,) = re.findall(r'<svg class="interval"[^>]*aria-label="([^"]*)"', body)
    assert label.startswith("relative lift: +") and label.endswith("which lies above 0")

    # The guardrail: both arms' 5xx share (none failed), held.
    (guard,) = cells(body, "guardrail-table")
    assert guard[0] == ["error_rate"] and guard[-1] == ["held"]


async def test_a_sample_ratio_mismatch_is_flagged_and_makes_the_experiment_invalid(tmp_path: Path) -> None:
    experiment = definition()
    users = {"control": 400, "treatment": 250}  # a 50/50 split: far from the weights
    async with analysed(tmp_path, experiment, users, {"control": 0.1, "treatment": 0.1}) as runner:
        html = await render(tmp_path, experiment, runner)
        api = entry(runner, experiment)
    decision = api["analysis"]["decision"]
    assert decision["decision"] == "invalid"
    banner = part(html, '<div class="decision d-invalid">', "</div>")
    assert '<span class="verdict v-invalid">invalid</span>' in banner
    # The reason says "p = ... < 0.001": its "<" reaches the page escaped.
    assert "<" in decision["reason"] and unescape(banner).count(decision["reason"]) == 1
    assert "&lt; 0.001" in banner
    flagged = [" ".join(row[4]) for row in cells(html, "srm-table")]
    assert "mismatch: p < 0.001, the arms are not comparable" in flagged
    assert section.SRM_ALPHA == srm.SRM_ALPHA


async def test_keep_running_says_how_many_units_are_still_needed(tmp_path: Path) -> None:
    experiment = definition()
    async with analysed(
        tmp_path, experiment, {"control": 60, "treatment": 60}, {"control": 0.1, "treatment": 0.12}
    ) as runner:
        html = await render(tmp_path, experiment, runner)
        api = entry(runner, experiment)
    decision = api["analysis"]["decision"]
    assert decision["decision"] == "keep_running"
    remaining = decision["remaining"]
    # A 50/50 split needs as many units in each arm.
    assert remaining["control"] == remaining["treatment"] > 0
    banner = part(html, '<div class="decision d-keep_running">', "</div>")
    assert f"<p>Units still needed: {number(remaining['control'])} more per arm.</p>" in banner
    (row,) = cells(html, "effect-table")
    assert " ".join(row[8]).startswith(f"not significant its mde needs {number(remaining['control'])} more per arm")


async def test_a_breached_guardrail_reverts_and_is_marked(tmp_path: Path) -> None:
    experiment = definition()
    users, rates = {"control": 200, "treatment": 200}, {"control": 0.1, "treatment": 0.1}
    async with analysed(tmp_path, experiment, users, rates, errors={"treatment": 100}) as runner:
        html = await render(tmp_path, experiment, runner)
    banner = part(html, '<div class="decision d-revert">', "</div>")
    assert "Revert: treatment." in banner
    (guard,) = cells(html, "guardrail-table")
    # 0 % against 10 % of 1,000 requests: 10 points more than control, where 5 are allowed.
    assert guard == [
        ["error_rate"],
        ["treatment"],
        ["0.0", "%"],
        ["10.0", "%"],
        ["+10.0", "%"],
        ["5.0", "%"],
        ["breached"],
    ]


async def test_before_the_first_analysis_the_experiment_is_pending_with_its_arms(tmp_path: Path) -> None:
    experiment = definition()
    async with opened(tmp_path / "store") as store:
        runner = ExperimentRunner(
            store, experiment, PerformanceConfig(task="classification"), routing=lambda: None, serving=lambda: ()
        )
        html = await render(tmp_path, experiment, runner)
    body = part(html, '<h2 id="experiment-h">Experiment</h2>')
    assert '<div class="decision d-pending"><p><span class="verdict v-pending">pending</span></p>' in body
    assert cells(body, "arm-table") == [
        [["control"], ["0.5"], ["the", "primary", "upstream"]],
        [["treatment"], ["0.5"], ["http://challenger"]],
    ]
    assert "effect-table" not in body and "srm-table" not in body


async def test_a_shadow_experiment_shows_its_mirrors_where_they_are_counted(tmp_path: Path) -> None:
    counts = dict.fromkeys(OUTCOMES, 0) | {"sent": 41, "timeout": 2, "dropped_queue_full": 3}
    html = await render(tmp_path, SHADOW, None, lambda: counts)
    body = part(html, '<h2 id="experiment-h">Experiment</h2>')
    assert '<span class="verdict v-not_analysed">not analysed</span>' in body
    assert "hunter2" not in html and "http://ml:***@challenger:8080" in body
    assert cells(body, "shadow-table") == [
        [outcome.replace("_", " ").split(), [number(counts[outcome])]] for outcome in OUTCOMES
    ]

    # Where the mirror is not at hand (the monitoring process), the page says where its counts are.
    elsewhere = part(await render(tmp_path, SHADOW), '<h2 id="experiment-h">Experiment</h2>')
    assert "shadow-table" not in elsewhere
    assert "<code>mlsidecar_shadow_requests_total</code>" in elsewhere
    assert '<span class="verdict v-not_analysed">not analysed</span>' in elsewhere


async def test_a_compared_shadow_experiment_shows_the_comparison_as_the_api_gives_it(tmp_path: Path) -> None:
    experiment = experiment_of()
    counts = dict.fromkeys(OUTCOMES, 0) | {"sent": REQUESTS}
    async with wired(tmp_path / "shadow", experiment) as parts:
        captured = [i for i in range(REQUESTS) if serve(parts, i)]
        await wait_until(lambda: parts.pairing.answers == REQUESTS, timeout=20)
        await parts.store.flush()
        await parts.store.attach_labels([LabelItem(f"req-{i}", None, truth(x_of(i))) for i in captured])
        assert await parts.runner.evaluate() is not None
        html = await render(tmp_path, experiment, parts.runner, lambda: counts)
        api = entry(parts.runner, experiment)
    compared = api["shadow"]
    assert (api["status"], api["analysis"]) == ("evaluated", None)
    body = part(html, '<h2 id="experiment-h">Experiment</h2>')
    assert "not analysed" not in body and "v-pending" not in body
    assert '<a href="#experiment-h">iris-v2-shadow</a><br><span class="verdict v-evaluated">evaluated</span>' in html
    assert "α 0.05, holm correction over the label metrics" in body

    # The pairing: its rate, control's rows, the pairs and the labelled ones, and the answers' fates.
    pairing = compared["pairing"]
    assert pairing["rate"] == 1.0 and pairing["paired"] == len(captured)
    words = unescape(re.sub(r"<[^>]+>", "", body))
    assert (
        f"Paired: {percent(pairing['rate'])} of control's {number(pairing['control_rows'])} stored predictions have "
        f"the challenger's beside them ({number(pairing['paired'])} pairs, {number(pairing['labelled'])} with a label)."
    ) in words
    answers = ", ".join(f"{fate.replace('_', ' ')} {number(n)}" for fate, n in pairing["answers"].items())
    assert f"The challenger's answers read here: {answers}." in words
    assert pairing["answers"]["not_captured"] == REQUESTS - len(captured) > 0

    # Each model's requests, 5xx share and p95, as the API gives them.
    models = cells(body, "arm-table")
    assert [row[0] for row in models] == [["control"], ["challenger"]]
    for row, arm in zip(models, compared["arms"], strict=True):
        assert row[1:4] == [[number(arm["requests"])], percent(arm["error_rate"]).split(), _ms(arm["latency_p95_ms"])]
    assert models[1][4] == ["http://challenger"]

    # The agreement with its interval, and the PSI with its verdict.
    agreement, shift = compared["agreement"], compared["shift"]
    likeness = cells(body, "likeness-table")
    assert likeness[0][:2] == [
        ["Agreement"],
        [*percent(agreement["rate"]).split(), *percent(agreement["ci_low"]).split(), "to",
         *percent(agreement["ci_high"]).split()],
    ]  # fmt: skip
    assert likeness[0][2][:4] == [number(agreement["agreed"]), "of", number(agreement["n"]), "pairs"]
    assert agreement["ci_low"] < agreement["rate"] < agreement["ci_high"]
    assert likeness[1][1] == [number(shift["psi"]), *shift["verdict"].split("_")]
    assert shift["psi"] is not None
    assert f'<span class="verdict v-{shift["verdict"]}">' in part(body, 'class="likeness-table"', "</table>")

    # The score differences: this classifier gives no confidences, so none are computed, and none are shown.
    differences = compared["differences"]
    (row,) = cells(body, "difference-table")
    assert row[0] == ["confidences", "challenger", "−", "control"]
    assert differences["n"] == 0 and row[1:] == [["0"], *[["–"]] * 6]

    # The label metric: both models' values, the difference, p and adjusted p, and its verdict coloured as a win.
    (metric,) = compared["metrics"]
    assert metric["verdict"] == "challenger_better"
    (row,) = cells(body, "shadow-effect-table")
    discordant = metric["discordant"]
    assert row == [
        ["accuracy", "primary,", "proportion,", "McNemar"],
        [number(metric["n"]), "discordant:", "control", "only", number(discordant["control_only"]) + ",",
         "challenger", "only", number(discordant["challenger_only"])],
        percent(metric["control"]).split(),
        percent(metric["challenger"]).split(),
        [signed(number(metric["difference"] * 100)), "pp"],
        [number(metric["pvalue"])],
        [number(metric["pvalue_adjusted"])],
        ["challenger", "better"],
    ]  # fmt: skip
    assert '<span class="verdict v-challenger_better">challenger better</span>' in body
    assert ".v-challenger_better{color:var(--ok)}.v-challenger_worse{color:var(--bad)}" in html

    # The guardrail on the p95 latency, held; then the mirrors, as before the comparison.
    (guard,) = compared["guardrails"]
    assert cells(body, "guardrail-table") == [
        [["latency_p95_ms"], _ms(guard["control"]), _ms(guard["challenger"]),
         [signed(number(guard["increase"])), "ms"], _ms(guard["max_increase"]), ["held"]],
    ]  # fmt: skip
    assert cells(body, "shadow-table") == [
        [outcome.replace("_", " ").split(), [number(counts[outcome])]] for outcome in OUTCOMES
    ]


async def test_a_shadow_experiment_is_pending_until_its_first_comparison(tmp_path: Path) -> None:
    experiment = experiment_of()
    counts = dict.fromkeys(OUTCOMES, 0) | {"sent": 7}
    async with wired(tmp_path / "shadow", experiment) as parts:
        html = await render(tmp_path, experiment, parts.runner, lambda: counts)
        api = entry(parts.runner, experiment)
    assert (api["status"], api["shadow"]) == ("pending", None)
    body = part(html, '<h2 id="experiment-h">Experiment</h2>')
    assert '<div class="decision d-pending"><p><span class="verdict v-pending">pending</span></p>' in body
    assert "No comparison yet" in body and "not analysed" not in body
    assert "likeness-table" not in body and "shadow-effect-table" not in body
    assert cells(body, "shadow-table") == [
        [outcome.replace("_", " ").split(), [number(counts[outcome])]] for outcome in OUTCOMES
    ]


def _ms(value: float | None) -> list[str]:
    """A latency's cell as the page writes it, in words."""
    return ["–"] if value is None else [number(value), "ms"]


async def test_without_an_experiment_there_is_no_section(tmp_path: Path) -> None:
    html = await render(tmp_path, None)
    assert 'id="experiment-h"' not in html and "#experiment-h" not in html
    assert "/api/v1/experiments" not in html
