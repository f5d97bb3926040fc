"""The rows of the ml-sidecar dashboard, top to bottom; :mod:`tools.dashboard` lays them out.

Each function returns one row's panels in order. See :mod:`tools.dashboard` for what each row
shows and why drift is read from the recording rules only.
"""

from __future__ import annotations

from tools.panels import (
    MODEL,
    Mappings,
    PanelBuilder,
    Steps,
    graph,
    listing,
    quantile,
    rate,
    ratio,
    single,
    states,
)

__all__ = ["ROWS"]

PSI = "model_feature:mlsidecar_feature_psi:fleet1h"

# mlsidecar_monitor_up: 1 while the monitoring process runs, 0 while it restarts.
UP: Mappings = {"1": ("up", "green"), "0": ("restarting", "red")}

# The verdicts' thresholds (docs/architecture.md, "Statistics"): moderate above 0.1, drift above 0.2.
PSI_STEPS: Steps = ((None, "green"), (0.1, "yellow"), (0.2, "red"))

# An experiment's decisions in the order of sidecar/experiments/decision.py's rules, each with its colour. The
# decision panel numbers them from the last (keep_running 1) to the first (invalid 5): the largest number any
# replica reports is the first rule that applies on one of them.
DECISIONS = (
    ("invalid", "purple"),
    ("revert", "red"),
    ("roll_out", "green"),
    ("no_difference", "blue"),
    ("keep_running", "yellow"),
)
DECISION_STATES: Mappings = {
    str(len(DECISIONS) - index): (name.replace("_", " "), colour) for index, (name, colour) in enumerate(DECISIONS)
}


def serving() -> list[PanelBuilder]:
    """Layer 1: rate, latency percentiles and errors, from the proxy's own counters."""
    requests = "mlsidecar_requests_total"
    errors, everything = rate(requests, ',code=~"5.."'), rate(requests)
    return [
        single(
            "Replicas",
            "Sidecars exporting this model now: one per model-server pod.",
            (f"count(mlsidecar_requests_in_flight{{{MODEL}}})", "replicas"),
            unit="none",
        ),
        single(
            "Requests",
            "Requests per second through every sidecar of the model.",
            (f"sum({everything})", "requests/s"),
            unit="reqps",
        ),
        single(
            "5xx share",
            "Share of the requests answered with a 5xx (the proxy's own 502, 503 and 504 included), all sidecars.",
            (ratio(f"sum({errors})", f"sum({everything})"), "5xx"),
            unit="percentunit",
            steps=((None, "green"), (0.05, "yellow"), (0.5, "red")),
        ),
        single(
            "Client latency p99",
            "99th percentile of the latency the clients see, all sidecars together.",
            (quantile(0.99, "mlsidecar_request_duration_seconds"), "p99"),
            unit="s",
        ),
        single(
            "Since the last request",
            "Seconds since the most recent request any sidecar of the model served.",
            (f"time() - max(mlsidecar_last_request_timestamp_seconds{{{MODEL}}})", "idle"),
            unit="s",
        ),
        single(
            "Fallback model",
            "use_fallback_model: traffic goes to SIDECAR_FALLBACK_URL while it is set on any sidecar.",
            (f"max(mlsidecar_fallback_active{{{MODEL}}})", "fallback"),
            unit="none",
            mappings={"0": ("off", "green"), "1": ("ON", "red")},
        ),
        graph(
            "Requests by status code",
            "Requests per second by the status the client received (499: the client went away).",
            [(f"sum by (code) ({everything})", "{{code}}")],
            unit="reqps",
        ),
        graph(
            "Latency",
            "Client latency percentiles, and the upstream's p99 (request sent to response end): the gap is "
            "the sidecar and the network.",
            [
                (quantile(0.5, "mlsidecar_request_duration_seconds"), "p50"),
                (quantile(0.9, "mlsidecar_request_duration_seconds"), "p90"),
                (quantile(0.99, "mlsidecar_request_duration_seconds"), "p99"),
                (quantile(0.99, "mlsidecar_upstream_duration_seconds"), "p99 upstream"),
            ],
            unit="s",
        ),
        graph(
            "5xx share per sidecar",
            "The serving_errors_high alert (P1) fires above 0.5 for one sidecar, over 5 minutes.",
            [(ratio(f"sum by (instance) ({errors})", f"sum by (instance) ({everything})"), "{{instance}}")],
            unit="percentunit",
            steps=((None, "green"), (0.5, "red")),
        ),
        graph(
            "Proxy errors by reason",
            "Requests the sidecar could not forward or finish: connect, timeout, protocol (a broken upstream "
            "response), pool (no free upstream connection), client_stall (a client that stopped reading).",
            [(f"sum by (reason) ({rate('mlsidecar_proxy_errors_total')})", "{{reason}}")],
            unit="reqps",
        ),
        graph(
            "Requests in flight and open connections",
            "Requests being served, and client connections open on each port.",
            [
                (f"sum(mlsidecar_requests_in_flight{{{MODEL}}})", "in flight"),
                (f"sum by (port) (mlsidecar_connections_open{{{MODEL}}})", "open connections ({{port}})"),
            ],
            unit="none",
            span=8,
        ),
        graph(
            "Connections closed by a limit",
            "Connections the limits closed (Limits and hardening in the README): oversized or slow request "
            "heads, evictions and refusals past the connection limit.",
            [(f"sum by (port, reason) ({rate('mlsidecar_connections_closed_total')})", "{{port}} {{reason}}")],
            unit="cps",
            span=8,
        ),
        graph(
            "Body sizes (p50, p99)",
            "Request and response body sizes.",
            [
                (quantile(0.5, "mlsidecar_request_size_bytes"), "request p50"),
                (quantile(0.99, "mlsidecar_request_size_bytes"), "request p99"),
                (quantile(0.5, "mlsidecar_response_size_bytes"), "response p50"),
                (quantile(0.99, "mlsidecar_response_size_bytes"), "response p99"),
            ],
            unit="bytes",
            span=8,
        ),
    ]


def capture() -> list[PanelBuilder]:
    """What was captured, every place a capture or a log row can be dropped, and the monitoring process."""
    return [
        graph(
            "Captured exchanges by strategy",
            "Exchanges the sampler kept, per second.",
            [(f"sum by (strategy) ({rate('mlsidecar_captures_total')})", "{{strategy}}")],
            unit="reqps",
            span=8,
        ),
        graph(
            "Capture drops by reason",
            "Exchanges not captured: queue_full (the capture queue or the in-flight budget, in items or "
            "bytes), too_large (a body over SIDECAR_CAPTURE_MAX_BYTES), parse_error, error (a fault in the "
            "sampler), monitor_restart (handed to a monitoring process that ended before processing it). The "
            "responses are unaffected.",
            [(f"sum by (reason) ({rate('mlsidecar_capture_dropped_total')})", "{{reason}}")],
            unit="reqps",
            span=8,
        ),
        graph(
            "Prediction-log records by sink and outcome",
            "Rows written, dropped (a full sink queue) or failed, per sink.",
            [(f"sum by (sink, outcome) ({rate('mlsidecar_log_records_total')})", "{{sink}} {{outcome}}")],
            unit="rps",
            span=8,
        ),
        graph(
            "Prediction store rows",
            "Stored predictions that delayed labels can join, summed over the replicas (each has its own store).",
            [(f"sum(mlsidecar_prediction_store_rows{{{MODEL}}})", "rows")],
            unit="short",
            span=6,
        ),
        graph(
            "Prediction store: evicted, dropped, failed",
            "Rows evicted (TTL, max rows), exchanges dropped before the store (buffer full, shutdown) and "
            "failed writes.",
            [
                (f"sum by (reason) ({rate('mlsidecar_prediction_store_evicted_total')})", "evicted {{reason}}"),
                (f"sum by (reason) ({rate('mlsidecar_prediction_store_dropped_total')})", "dropped {{reason}}"),
                (f"sum by (kind) ({rate('mlsidecar_prediction_store_failures_total')})", "failed {{kind}}"),
            ],
            unit="rps",
            span=7,
        ),
        graph(
            "Monitoring faults",
            "Faults inside the monitoring, by stage; each is counted and never reaches a response.",
            [(f"sum by (stage) ({rate('mlsidecar_monitor_errors_total')})", "{{stage}}")],
            unit="ops",
            span=7,
        ),
        single(
            "Series cut from /metrics",
            "Series left out of the last scrape because their family has more than SIDECAR_METRICS_MAX_SERIES, "
            "by family, summed over the replicas. Panels that read a cut family are incomplete.",
            (f"sum by (family) (mlsidecar_metrics_series_dropped{{{MODEL}}})", "{{family}}"),
            unit="none",
            steps=((None, "green"), (1, "red")),
            no_value="none cut",
        ),
        states(
            "Monitoring process per replica",
            "Each sidecar's monitoring process (SIDECAR_MONITORING_PLANE=process, the default; no data in inline "
            "mode): up, or restarting after it ended (a crash, the OOM killer). While it restarts the proxy serves "
            "on, /metrics carries the serving families only and captures are dropped and counted.",
            (f"mlsidecar_monitor_up{{{MODEL}}}", "{{instance}}"),
            span=20,
            mappings=UP,
        ),
        single(
            "Monitoring process restarts",
            "Times a monitoring process ended unexpectedly and was restarted, over the dashboard's time range, all "
            "replicas. The exchanges it held count as capture drops (monitor_restart). Above 0, read that "
            "replica's log: a crash, or the OOM killer (the container's memory limit).",
            (f"sum(increase(mlsidecar_monitor_restarts_total{{{MODEL}}}[$__range]))", "restarts"),
            unit="none",
            steps=((None, "green"), (1, "red")),
            height=8,
        ),
    ]


def drift() -> list[PanelBuilder]:
    """Fleet-wide drift from the recording rules, with the inputs of their guards."""
    features = f'{MODEL},feature=~"$feature"'
    return [
        graph(
            "Fleet PSI by feature",
            "PSI of each feature over the last hour, computed by the recording rules from the per-bin counters "
            "summed over every replica; never the average of the replicas' PSI. Absent below 200 observations "
            "and while replicas disagree on the reference version. Moderate above 0.1, drift above 0.2.",
            [(f"{PSI}{{{features}}}", "{{feature}}")],
            unit="none",
            span=16,
            steps=PSI_STEPS,
        ),
        single(
            "Drifted features (fleet)",
            "Share of the features with a fleet PSI above 0.2, among those with a fleet PSI.",
            (ratio(f"count({PSI}{{{MODEL}}} > 0.2)", f"count({PSI}{{{MODEL}}})"), "drifted"),
            unit="percentunit",
            steps=((None, "green"), (0.01, "yellow"), (0.5, "red")),
        ),
        single(
            "Reference versions in the window",
            "Reference profile versions the replicas reported over the last hour. Above 1 (a profile rollout, "
            "or learned references) the fleet PSI is withheld: bins differ between versions.",
            (f"model:mlsidecar_reference_versions:count1h{{{MODEL}}}", "versions"),
            unit="none",
            steps=((None, "green"), (2, "red")),
        ),
        graph(
            "Which bins drift: PSI term per bin",
            "Each reference bin's term (cur - ref) * ln(cur / ref) of the fleet PSI; the PSI is their sum.",
            [(f"model_feature_bin:mlsidecar_feature_psi_contribution:fleet1h{{{features}}}", "{{feature}} {{bin}}")],
            unit="none",
        ),
        graph(
            "Bin shares: last hour against the reference",
            "The fleet's share of each bin over the last hour, and the reference profile's share.",
            [
                (f"model_feature_bin:mlsidecar_feature_bin_share:ratio1h{{{features}}}", "{{feature}} {{bin}}"),
                (
                    f"model_feature_bin:mlsidecar_feature_reference_bin_ratio:max{{{features}}}",
                    "{{feature}} {{bin}} reference",
                ),
            ],
            unit="percentunit",
        ),
        graph(
            "Observations in the window",
            "Weighted observations per feature over the last hour, all replicas: the fleet PSI needs 200.",
            [(f"model_feature:mlsidecar_feature_observations:increase1h{{{features}}}", "{{feature}}")],
            unit="short",
            steps=((None, "red"), (200, "green")),
        ),
        graph(
            "Output drift (PSI), worst replica",
            "PSI of the prediction, the confidence and the labels. Their bins are not exported, so there is no "
            "fleet rule: this is the largest replica's PSI, never an average.",
            [(f'max by (output) (mlsidecar_prediction_drift_score{{{MODEL},method="psi"}})', "{{output}}")],
            unit="none",
            steps=PSI_STEPS,
        ),
    ]


def quality() -> list[PanelBuilder]:
    """Data-quality violations, per record as the alert reads them, by check and by feature."""
    violations = "mlsidecar_data_quality_violations_total"
    per_record = rate(violations, ',feature!="__all__"')
    return [
        graph(
            "Violations per captured record",
            "Schema and value violations per captured record, all replicas; volume checks (feature __all__) "
            "count per slice and are left out. data_quality_major (P2) fires above 0.1 over 10 minutes.",
            [
                (
                    f"sum({per_record}) / sum({rate('mlsidecar_quality_records_total')})",
                    "violations per record",
                )
            ],
            unit="none",
            span=8,
            steps=((None, "green"), (0.1, "red")),
        ),
        graph(
            "Violations by check",
            "Violations per second by check: missing, unexpected, type, null, out_of_range, unseen_category, "
            "negative; volume_low, volume_high and missing_period per slice.",
            [(f"sum by (check) ({rate(violations)})", "{{check}}")],
            unit="ops",
            span=8,
        ),
        graph(
            "Captured records checked",
            "Records per second the quality checks saw: the denominator of the violations per record.",
            [(f"sum({rate('mlsidecar_quality_records_total')})", "records/s")],
            unit="rps",
            span=8,
        ),
        listing(
            "Features with violations, last hour",
            "The ten feature and check pairs with the most violations over the last hour, all replicas.",
            [(f"topk(10, sum by (feature, check) (increase({violations}{{{MODEL}}}[1h])) > 0)", "")],
            span=24,
        ),
    ]


def performance() -> list[PanelBuilder]:
    """Performance from joined labels, per replica, and the labels themselves."""
    accuracy, baseline = "mlsidecar_model_performance", "mlsidecar_model_performance_baseline"
    delays = f"increase(mlsidecar_label_delay_seconds_bucket{{{MODEL}}}[1h])"
    return [
        graph(
            "Performance per replica",
            "Metrics from joined delayed labels. With one store per replica, each replica's over the predictions "
            "it served; with the shared store (SIDECAR_STATE_URL), one series per metric, the fleet's, from the "
            "store's leader (mlsidecar_store_leader 1). Absent below SIDECAR_PERF_MIN_LABELS labels. "
            "estimated_accuracy needs no labels.",
            [
                (f"{accuracy}{{{MODEL}}}", "{{metric}} {{variant}} {{instance}}"),
                (f"max by (metric) ({baseline}{{{MODEL}}})", "{{metric}} baseline"),
            ],
            unit="none",
        ),
        graph(
            "Accuracy drop against the baseline",
            "(baseline - accuracy) / baseline per variant, the best replica's (or the shared store leader's, "
            "whichever pod leads): accuracy_drop (P2) fires above 0.1, on this same expression.",
            [
                (
                    f'(max without (instance, pod) ({baseline}{{{MODEL},metric="accuracy"}}) - ignoring (variant) '
                    f'group_right () max without (instance, pod) ({accuracy}{{{MODEL},metric="accuracy"}})) '
                    f"/ ignoring (variant) group_left () "
                    f'max without (instance, pod) ({baseline}{{{MODEL},metric="accuracy"}})',
                    "{{variant}}",
                )
            ],
            unit="percentunit",
            steps=((None, "green"), (0.1, "red")),
        ),
        graph(
            "Labelled samples",
            "Labelled predictions behind each metric, summed over the replicas.",
            [(f"sum by (variant, metric) (mlsidecar_model_performance_samples{{{MODEL}}})", "{{metric}} {{variant}}")],
            unit="short",
            span=8,
        ),
        graph(
            "Labels received by outcome",
            "Labels posted per second: joined, unmatched (no stored prediction: evicted, never captured or "
            "another replica's), duplicate, invalid.",
            [(f"sum by (outcome) ({rate('mlsidecar_labels_total')})", "{{outcome}}")],
            unit="ops",
            span=8,
        ),
        graph(
            "Label coverage per replica",
            "Share of the stored predictions in the window that have a label.",
            [(f"mlsidecar_label_coverage{{{MODEL}}}", "{{instance}}")],
            unit="percentunit",
            span=8,
        ),
        graph(
            "Label delay, last hour",
            "Time from a prediction to its label, over the labels joined in the last hour, all replicas.",
            [
                (
                    f"histogram_quantile({q}, sum by (le) ({delays}))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.9)
            ],
            unit="s",
            span=10,
        ),
        graph(
            "Retraining triggers, last hour",
            "Triggers by reason and outcome (sent, failed, suppressed by the cooldown, recorded without a webhook).",
            [
                (
                    f"sum by (reason, outcome) (increase(mlsidecar_retrain_triggers_total{{{MODEL}}}[1h]))",
                    "{{reason}} {{outcome}}",
                )
            ],
            unit="short",
            span=10,
        ),
        single(
            "Model age",
            "Time since the model was trained (SIDECAR_MODEL_TRAINED_AT, else the profile's created_at).",
            (f"max(mlsidecar_model_age_seconds{{{MODEL}}})", "age"),
            unit="s",
        ),
    ]


def experiments() -> list[PanelBuilder]:
    """The A/B experiment's decision, effects and checks from its analysis, and the traffic of its arms or mirrors.

    Every replica analyses the experiment and exports its own result (sidecar/experiments/runner.py): with the
    shared store they read the same sums and agree, so one series per model and experiment is taken across them.
    """
    effect = "mlsidecar_experiment_effect"
    # One number per replica, the current decision's (the others are 0), then the largest across the replicas.
    codes = " or ".join(
        f'mlsidecar_experiment_decision{{{MODEL},decision="{name}"}} * {len(DECISIONS) - index}'
        for index, (name, _) in enumerate(DECISIONS)
    )
    return [
        states(
            "Experiment decision",
            "The decision of the last analysis (SIDECAR_EXPERIMENT_INTERVAL_SECONDS): invalid (a sample ratio "
            "mismatch), revert (a primary metric significantly worse, or a guardrail breached), roll out (a primary "
            "metric significantly better after the correction), no difference (every primary interval excludes "
            "the mde), keep running. Where replicas differ, the one first in that order. The reason and the units "
            "still needed: the status page and /api/v1/experiments.",
            (f"max without (instance, pod) (sum without (decision) ({codes}))", "{{experiment}}"),
            span=20,
            mappings=DECISION_STATES,
        ),
        single(
            "Analyses that kept the last one",
            "Experiment analyses over the dashboard's time range that published nothing new, all replicas: the "
            "prediction store failed or could not be reached (store), or the analysis raised (error; see the log).",
            (f"sum(increase(mlsidecar_experiment_evaluation_failures_total{{{MODEL}}}[$__range]))", "failures"),
            unit="none",
            steps=((None, "green"), (1, "red")),
            height=8,
        ),
        graph(
            "Relative lift and its interval",
            "Each treatment against control on each primary and secondary metric: the relative lift "
            "(treatment / control - 1) and its interval (ci_low, ci_high; always-valid with sequential: true). An "
            "interval above 0 is better for a metric to increase. The largest replica's value.",
            [
                (
                    f'max without (instance, pod) ({effect}{{{MODEL},stat=~"lift|ci_low|ci_high"}})',
                    "{{experiment}} {{variant}} {{metric}} {{stat}}",
                )
            ],
            unit="percentunit",
            steps=((None, "red"), (0, "green")),
        ),
        graph(
            "p-values",
            "Each comparison's p-value and its adjusted p-value (Holm or Bonferroni over primary + secondary), on "
            "a log scale; the dashed line is the default alpha 0.05 (the experiment's own is in "
            "/api/v1/experiments). The largest replica's value.",
            [
                (
                    f'max without (instance, pod) ({effect}{{{MODEL},stat=~"pvalue|pvalue_adjusted"}})',
                    "{{experiment}} {{variant}} {{metric}} {{stat}}",
                )
            ],
            unit="none",
            steps=((None, "green"), (0.05, "yellow")),
            log=True,
        ),
        graph(
            "Sample ratio p-value",
            "The chi-square test of the units per arm against the weights, on assignment (the router's) and on "
            "capture (the stored units), on a log scale. Below the 0.001 line the experiment is invalid: the arms "
            "are not comparable. The smallest replica's value.",
            [(f"min without (instance, pod) (mlsidecar_experiment_srm_pvalue{{{MODEL}}})", "{{experiment}} {{stage}}")],
            unit="none",
            steps=((None, "red"), (0.001, "green")),
            log=True,
        ),
        graph(
            "Assignments per arm",
            "Requests the routers assigned to each arm per second, by unit or by coin, all replicas (split mode).",
            [
                (
                    f"sum by (experiment, variant) ({rate('mlsidecar_experiment_units_total')})",
                    "{{experiment}} {{variant}}",
                )
            ],
            unit="reqps",
        ),
        graph(
            "Shadow mirrors by outcome",
            "Copies of requests sent to the challenger per second, by outcome (shadow mode): sent, error, timeout, "
            "dropped_queue_full, dropped_too_large, dropped_shutdown, dropped_restart, dropped_busy (the proxy had "
            "no time to spare). Client responses are never affected.",
            [
                (
                    f"sum by (experiment, outcome) ({rate('mlsidecar_shadow_requests_total')})",
                    "{{experiment}} {{outcome}}",
                )
            ],
            unit="reqps",
        ),
        graph(
            "Outcomes posted",
            "Business outcomes posted to /api/v1/outcomes per second, by what became of them: joined an arm, "
            "unmatched (no stored prediction with that key), duplicate, invalid.",
            [
                (
                    f"sum by (experiment, outcome) ({rate('mlsidecar_experiment_outcomes_total')})",
                    "{{experiment}} {{outcome}}",
                )
            ],
            unit="ops",
        ),
    ]


def alerts() -> list[PanelBuilder]:
    """The sidecars' own alerts and notifications, and Prometheus' alerts from deploy/prometheus."""
    return [
        states(
            "Sidecar alerts",
            "The alert rules each sidecar judges itself (SIDECAR_ALERT_RULES or the built-in defaults): "
            "firing on any replica.",
            (f"max by (alert, severity) (mlsidecar_alert_active{{{MODEL}}})", "{{alert}} {{severity}}"),
        ),
        graph(
            "Alert notifications",
            "Notifications the sidecars sent to Alertmanager and the webhook: delivered, failed, dropped.",
            [
                (
                    f"sum by (target, outcome) ({rate('mlsidecar_alert_notifications_total')})",
                    "{{target}} {{outcome}}",
                )
            ],
            unit="ops",
        ),
        listing(
            "Prometheus alerts",
            "Pending and firing alerts from deploy/prometheus/alerting_rules.yml for this model.",
            [(f"ALERTS{{{MODEL}}}", "")],
            span=24,
        ),
    ]


ROWS = (
    ("Serving: rate, latency, errors", serving),
    ("Capture and drops", capture),
    ("Drift (fleet-wide, from the recording rules)", drift),
    ("Data quality", quality),
    ("Labels and performance", performance),
    ("Experiments", experiments),
    ("Alerts", alerts),
)
