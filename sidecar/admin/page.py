"""The status page, ``GET /`` on the admin port: one self-contained HTML document, rendered on the server.

It shows what the JSON API shows (``/api/v1/drift``, ``/quality``,
``/performance``, ``/alerts``, and ``/experiments`` when an experiment is
configured), read from the same published snapshots, plus
the request counters and the bounded history of past evaluations
(:mod:`sidecar.admin.history`), and readiness from ``/readyz``. It loads nothing from anywhere: no CDN, font
or script from outside, since clusters are often offline. The styles and the
one small script are inline; the charts are inline SVG (:mod:`sidecar.admin.charts`).

**Refresh.** The script fetches the page again every ``refresh_seconds``
(the evaluation interval, between 1 and 60 s) and swaps in the new
``<main>``, keeping the scroll position; a button pauses it, and without
script a ``<noscript>`` meta refresh does the same job.

**Safety.** The page shows strings from traffic (feature names, categories,
values), so every one is escaped (:mod:`sidecar.admin.markup`), and the
Content-Security-Policy allows only this page's own script and style, by
hash: an injected tag that escaped escaping would still not run.

**Auth.** Like the ``GET /api/v1/*`` endpoints it reads, the page needs no token.

Usage::

    Starlette(routes=[status_route(flags, monitors, performance, alerts, history, refresh_seconds=15)])
    # with an experiment, its section too (the mirrors' counts where this process holds them):
    status_route(..., experiment=experiment, experiments=runner, shadow_outcomes=lambda: shadow.outcomes)
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from sidecar.admin.experiment import experiment_section
from sidecar.admin.features import drift_section
from sidecar.admin.history import History, HistoryView
from sidecar.admin.markup import esc, number
from sidecar.admin.panels import (
    PageData,
    alerts_section,
    history_section,
    performance_section,
    quality_section,
    status_section,
    traffic_section,
)
from sidecar.alerting import AlertEngine
from sidecar.experiments.api import experiments_json
from sidecar.experiments.definition import Experiment
from sidecar.experiments.runner import ExperimentRunner
from sidecar.experiments.shadow import Outcome as MirrorOutcome
from sidecar.experiments.shadow_runner import ShadowRunner
from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.labels.views import performance_json
from sidecar.monitoring.evaluator import DataMonitors
from sidecar.serving.flags import Flags

__all__ = ["CSP", "refresh_interval", "render_page", "status_route"]

STYLE: Final = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--soft:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;
color-scheme:light}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header,main{max-width:1200px;margin:0 auto;padding:0 16px}
header{display:flex;flex-wrap:wrap;gap:4px 16px;align-items:baseline;justify-content:space-between;padding-top:12px}
h1{font-size:1.4rem;margin:0;overflow-wrap:anywhere}
h2{font-size:1.2rem;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:1rem;margin:18px 0 6px;overflow-wrap:anywhere}
p,dd,li,figcaption{overflow-wrap:anywhere}
nav ul{list-style:none;padding:0;margin:8px 0;display:flex;flex-wrap:wrap;gap:4px 14px}
.sub,.empty,.tick{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px;margin:0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px;background:var(--soft)}
.card dt{font-size:.8rem;color:var(--muted)}.card dd{margin:2px 0 0}.card ul{margin:4px 0;padding-left:18px}
.scroll{overflow-x:auto;max-width:100%;margin:6px 0}
table{border-collapse:collapse;width:100%;min-width:30rem;font-size:.9rem}
.drift-table{min-width:46rem}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:var(--soft);white-space:nowrap}
tbody th{font-weight:600;min-width:8rem;max-width:18rem;overflow-wrap:anywhere}
td{font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:0 6px;border-radius:10px;font-size:.8rem;border:1px solid;white-space:nowrap}
.v-drift{color:var(--bad)}.v-moderate{color:var(--warn)}.v-no_drift{color:var(--ok)}
.v-insufficient_data{color:var(--muted)}
.v-roll_out,.v-evaluated{color:var(--ok)}.v-revert,.v-invalid{color:var(--bad)}.v-keep_running{color:var(--warn)}
.v-no_difference,.v-pending,.v-not_analysed{color:var(--muted)}
.v-challenger_better{color:var(--ok)}.v-challenger_worse{color:var(--bad)}
.v-not_significant,.v-insufficient_labels,.v-not_paired{color:var(--muted)}
.decision{border-left:4px solid var(--line);padding:2px 12px;margin:8px 0;background:var(--soft)}
.decision .verdict{font-size:1.1rem;padding:1px 10px}.decision p{margin:6px 0}
.effect-table td:not(:last-child),.shadow-effect-table td:not(:last-child){white-space:nowrap}
.d-roll_out{border-color:var(--ok)}.d-revert,.d-invalid{border-color:var(--bad)}.d-keep_running{border-color:var(--warn)}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,280px),1fr));gap:12px}
.charts.wide{grid-template-columns:repeat(auto-fill,minmax(min(100%,420px),1fr))}
.charts.wide>div{min-width:0}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:8px;min-width:0}
figcaption{font-size:.9rem;margin-bottom:4px}figcaption .name{font-weight:600}
svg.bins,svg.lines{width:100%;height:auto;display:block}
svg text{font-size:11px;fill:var(--fg)}svg.lines text{font-size:14px}svg .tick{fill:var(--muted)}
svg .axis{stroke:var(--line)}svg .zero{stroke:var(--muted)}svg .threshold{stroke:#8c959f;stroke-dasharray:4 4}
svg.spark{width:80px;height:20px;display:block}svg.interval{width:120px;height:20px;display:block;margin-top:2px}
.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:.85rem}
.legend svg{margin-right:4px;vertical-align:middle}
.swatch{display:inline-block;width:12px;height:12px;margin:0 4px 0 8px;vertical-align:middle}
.swatch.ref{background:#8c959f}.swatch.cur{background:#0969da}
.alert{border-left:4px solid var(--warn);padding:4px 12px;margin:8px 0;background:var(--soft)}
.alert.firing{border-color:var(--bad)}.alert h3{margin:4px 0}
.sev,.state{font-weight:normal;font-size:.85rem;color:var(--muted)}
code{overflow-wrap:anywhere}
.visually-hidden{position:absolute!important;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:var(--bg);padding:4px}
a:focus-visible,button:focus-visible,.scroll:focus-visible{outline:2px solid #0969da;outline-offset:2px}
button{font:inherit;padding:2px 10px}
footer{margin:32px 0 16px;color:var(--muted);font-size:.85rem}
"""

# Fetches the page again and swaps in its <main>; a pause button stops it. Never two fetches at once.
SCRIPT: Final = """
"use strict";
(() => {
  const every = Number(document.body.dataset.refresh) * 1000;
  const status = document.getElementById("refresh-status");
  const toggle = document.getElementById("refresh-toggle");
  let paused = false, running = false, timer = 0;
  const schedule = () => { clearTimeout(timer); if (!paused) timer = setTimeout(refresh, every); };
  // Readiness is the serving process's answer, the one the probes get: read it where they do.
  async function readiness() {
    const card = document.getElementById("readiness");
    if (!card) return;
    try {
      const body = await (await fetch("/readyz", {cache: "no-store"})).json();
      const state = document.createElement("span");
      state.className = body.ready ? "ok" : "bad";
      state.textContent = body.ready ? "ready" : "not ready";
      card.replaceChildren(state);
      const reasons = Array.isArray(body.reasons) ? body.reasons : [];
      if (reasons.length) {
        const list = document.createElement("ul");
        for (const reason of reasons) list.appendChild(document.createElement("li")).textContent = String(reason);
        card.appendChild(list);
      }
    } catch (error) {
      card.textContent = "unknown (" + error.message + ")";
    }
  }
  async function refresh() {
    if (running) return;
    running = true;
    try {
      const response = await fetch(location.href, {cache: "no-store"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      const next = new DOMParser().parseFromString(await response.text(), "text/html");
      const main = next.querySelector("main");
      if (!main) throw new Error("the answer had no content");
      // Keep the readiness shown until /readyz answers again, rather than flashing back to the link.
      const known = document.getElementById("readiness");
      if (known) main.querySelector("#readiness")?.replaceWith(known);
      document.querySelector("main").replaceWith(main);
      document.title = next.title;
      status.textContent = "Updated " + new Date().toLocaleTimeString();
      await readiness();
    } catch (error) {
      status.textContent = "Update failed (" + error.message + "); trying again";
    } finally {
      running = false;
      schedule();
    }
  }
  toggle.addEventListener("click", () => {
    paused = !paused;
    toggle.setAttribute("aria-pressed", String(paused));
    toggle.textContent = paused ? "Resume updates" : "Pause updates";
    if (paused) clearTimeout(timer); else refresh();
  });
  readiness();
  schedule();
})();
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only this page's own style and script run (by hash), it fetches only itself, and nobody may frame it.
CSP: Final = (
    f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_SECTIONS: Final = (
    ("status-h", "Status"),
    ("alerts-h", "Alerts"),
    ("traffic-h", "Traffic"),
    ("experiment-h", "Experiment"),  # only with an experiment
    ("drift-h", "Drift"),
    ("history-h", "History"),
    ("quality-h", "Data quality"),
    ("performance-h", "Performance"),
)


def refresh_interval(eval_interval: float) -> int:
    """Seconds between the page's updates: the evaluation interval (nothing changes faster), 1 to 60 s."""
    return round(min(max(eval_interval, 1.0), 60.0))


def render_page(d: PageData, *, refresh_seconds: int) -> str:
    """The whole document for ``d``."""
    drift = d.data.drift
    firing = sum(1 for alert in d.active if alert.state == "firing")
    title = " · ".join(
        [d.model, *([] if drift is None else [f"drift: {drift.verdict.replace('_', ' ')}"]), f"{firing} firing"]
    )
    sections = [(key, name) for key, name in _SECTIONS if key != "experiment-h" or d.experiment is not None]
    nav = "".join(f'<li><a href="#{key}">{name}</a></li>' for key, name in sections)
    body = "".join(
        (
            status_section(d),
            alerts_section(d),
            traffic_section(d),
            "" if d.experiment is None else experiment_section(d.experiment, shadow=d.shadow),
            drift_section(d.data, d.history),
            history_section(d),
            quality_section(d),
            performance_section(d),
        )
    )
    paths = ["/readyz", "/api/v1/drift", "/api/v1/quality", "/api/v1/performance", "/api/v1/alerts"]
    paths += [*([] if d.experiment is None else ["/api/v1/experiments"]), "/metrics"]
    api = ", ".join(f'<a href="{path}">{path}</a>' for path in paths)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · ml-sidecar</title>"
        # An empty icon: otherwise the browser asks for /favicon.ico, a 404 in its console on every load.
        '<link rel="icon" href="data:,">'
        f"<style>{STYLE}</style>"
        f'<noscript><meta http-equiv="refresh" content="{refresh_seconds}"></noscript></head>'
        f'<body data-refresh="{refresh_seconds}"><a class="skip" href="#main">Skip to the content</a>'
        f'<header><h1>ml-sidecar · {esc(d.model)}</h1><p class="sub">'
        f'<span id="refresh-status">Updates every {number(refresh_seconds)} s</span> '
        '<button id="refresh-toggle" type="button" aria-pressed="false">Pause updates</button></p></header>'
        f'<main id="main"><nav aria-label="Sections"><ul>{nav}</ul></nav>{body}'
        f"<footer>Rendered {esc(_clock(d.now))} UTC from the latest evaluation. The same data as JSON: {api}."
        "</footer></main>"
        f"<script>{SCRIPT}</script></body></html>"
    )


def _clock(now: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))


def status_route(
    flags: Flags,
    monitors: DataMonitors,
    performance: PerformanceEvaluator,
    alerts: AlertEngine,
    history: History | None,
    *,
    refresh_seconds: int,
    experiment: Experiment | None = None,
    experiments: ExperimentRunner | ShadowRunner | None = None,
    shadow_outcomes: Callable[[], Mapping[MirrorOutcome, int] | None] | None = None,
) -> Route:
    """``GET /``: the page, from the latest snapshots, and from ``history`` its past and the request counters.

    Without a ``history`` the page shows no traffic and no history, and says so. With an ``experiment``
    it shows its section, from the runner's (``experiments``: an :class:`ExperimentRunner` for a split
    experiment, a :class:`ShadowRunner` for a shadow one's comparison, None where none runs) latest snapshot
    as ``GET /api/v1/experiments`` reads it, and for a shadow experiment the mirrors' outcomes, where
    ``shadow_outcomes`` gives them (:attr:`sidecar.experiments.shadow.Shadow.outcomes`, or None while they
    are not known here).
    """

    async def page(request: Request) -> Response:
        labels = performance.snapshot
        data = PageData(
            now=time.time(),
            model=labels.model,
            flags=flags.to_json(),
            data=monitors.snapshot,
            performance=performance_json(labels),
            active=alerts.active(),
            transitions=list(alerts.history),
            serving=None if history is None else history.serving,
            history=HistoryView.empty() if history is None else history.view(),
            experiment=None if experiment is None else experiments_json(experiments, experiment)["experiments"][0],
            shadow=None if shadow_outcomes is None else shadow_outcomes(),
        )
        return HTMLResponse(render_page(data, refresh_seconds=refresh_seconds), headers=_HEADERS)

    return Route("/", page, methods=["GET"])
