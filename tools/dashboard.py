"""The ml-sidecar Grafana dashboard, built with grafana-foundation-sdk; ``python -m tools.dashboard`` writes it.

The committed file is ``deploy/grafana/ml-sidecar.json``. ``tests/deploy/test_grafana.py``
regenerates it and compares, and ``tests/deploy/test_grafana_queries.py`` runs every panel's
PromQL against a real Prometheus that scrapes real sidecars with ``deploy/prometheus``'s rules
loaded. Edit this module, never the JSON.

The SDK (Grafana's own typed builders for the dashboard format) is pinned to one release in
the dev extra, because its output is committed: another release may write other defaults.

Rows, top to bottom:

- **Serving**: replicas, request rate by status, client latency percentiles (and the
  upstream's p99), 5xx share (per sidecar, as the P1 alert reads it), proxy errors,
  connections, body sizes, the fallback flag;
- **Capture and drops**: captured exchanges, capture drops by reason, prediction-log records
  by sink and outcome, the prediction store, monitoring faults, series cut from ``/metrics``,
  and the monitoring process: up or restarting per replica, and its restarts over the time range;
- **Drift**: fleet-wide, from the recording rules only (the PSI of the summed per-bin counters,
  never an average of the replicas' PSI gauges), with the guard inputs (observations, reference
  versions), and output drift, for which no fleet rule exists, as the worst replica;
- **Data quality**: violations per captured record (the ``data_quality_major`` measure), by check
  and the top features;
- **Labels and performance**: performance per replica against the baseline, the accuracy drop
  the P2 alert reads, labelled samples, label outcomes, coverage and delay, model age, retraining;
- **Experiments**: the A/B experiment's decision over time (one series per model and experiment
  across the replicas, the first rule any of them reached), analyses that kept the last one, the
  relative lift with its interval, the p-values, the sample-ratio p-values against the 0.001 line,
  assignments per arm, the shadow mirrors by outcome and the outcomes posted;
- **Alerts**: the sidecars' own alert states and notifications, and the Prometheus alerts from
  ``deploy/prometheus/alerting_rules.yml``.

Variables: ``datasource`` (a Prometheus data source), ``model`` (one model; every family has it
as its first label) and ``feature`` (the drift panels; all features by default). Rates use
Grafana's ``$__rate_interval``, so set the data source's scrape interval to the scrape interval
of the sidecars; counts "over the time range" use Grafana's ``$__range``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import VariableOption, VariableRefresh, VariableSort

from tools.panels import DATASOURCE
from tools.rows import ROWS

__all__ = ["OUTPUT", "build", "main", "render"]

OUTPUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "ml-sidecar.json"


def build() -> dashboard.Dashboard:
    """The dashboard builder, every row and panel added."""
    board = (
        dashboard.Dashboard("ml-sidecar")
        .uid("ml-sidecar")
        .description(
            "ml-sidecar: serving, capture, fleet-wide drift, data quality, labels, experiments and alerts of one model."
        )
        .tags(["ml-sidecar"])
        .refresh("30s")
        .time("now-3h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("model")
            .label("Model")
            .datasource(DATASOURCE)
            .query("label_values(mlsidecar_requests_in_flight, model)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
        )
        .with_variable(
            dashboard.QueryVariable("feature")
            .label("Feature")
            .datasource(DATASOURCE)
            .query('label_values(model_feature_bin:mlsidecar_feature_reference_bin_ratio:max{model="$model"}, feature)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all"))
        )
    )
    for title, panels in ROWS:
        board = board.with_row(dashboard.Row(title))
        for panel in panels():
            board = board.with_panel(panel)
    return board


def render() -> str:
    """The dashboard as the committed JSON text: panels numbered from 1 in order."""
    model = build().build()
    # Grafana needs an id per panel, unique in the dashboard; the builders leave them unset or 0.
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] = ()) -> int:
    """Write the dashboard to ``OUTPUT`` (or the one path given)."""
    path = Path(argv[0]) if argv else OUTPUT
    path.write_text(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
