"""Build the monitoring components from the settings: one place that knows every constructor.

``server`` runs them; this module only turns a :class:`Settings` into wired
objects, and turns bad files (reference profile, quality rules) into start-up
errors that name the variable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from sidecar.alerting import AlertEngine, AlertMetrics, AlertRulesError, default_rules
from sidecar.alerting import load_rules as load_alert_rules
from sidecar.alerting.notify import Notifier, alertmanager_url
from sidecar.alerting.runner import AlertRunner
from sidecar.alerting.source import SignalSource
from sidecar.capture.handoff import Capture
from sidecar.capture.privacy import Anonymizer, PiiMode
from sidecar.capture.worker import Monitor
from sidecar.config import Settings
from sidecar.labels.monitor import LabelMonitor
from sidecar.labels.retraining import Retrainer, RetrainPolicy, model_trained_at, split_webhook_url
from sidecar.monitoring.evaluator import DataMonitors, DriftSettings, ReferenceStatus
from sidecar.monitoring.learning import ReferenceLearner
from sidecar.performance import METRICS, PerformanceConfig, Task
from sidecar.protocols import AdapterOptions
from sidecar.quality import QualityMonitor, QualityRulesError, load_rules
from sidecar.reference import ProfileError, ReferenceProfile, load_profile
from sidecar.sampling import build_sampler
from sidecar.serving.flags import Flags
from sidecar.serving.metrics import ProxyMetrics
from sidecar.sinks import Sink, build_sinks
from sidecar.store import PredictionStore
from sidecar.upstream.client import UpstreamClient

__all__ = ["Alerting", "Components", "build_alerting", "build_components", "load_reference"]

logger = logging.getLogger("sidecar")


@dataclass(frozen=True)
class Components:
    capture: Capture
    sinks: list[Sink]
    monitor: Monitor
    monitors: DataMonitors
    store: PredictionStore
    labels: LabelMonitor
    retrainer: Retrainer
    webhook: UpstreamClient | None  # the retraining webhook's client; the server opens and closes it
    baseline: dict[str, float]
    trained_at: float | None


@dataclass(frozen=True)
class Alerting:
    engine: AlertEngine
    runner: AlertRunner
    notifier: Notifier
    metrics: AlertMetrics
    clients: list[UpstreamClient]  # the notifier's; the server opens and closes them


def load_reference(settings: Settings) -> tuple[ReferenceProfile | None, ReferenceStatus]:
    """The configured profile, or none (then it is learned from warm-up traffic).

    A missing, corrupt or mismatched profile raises :class:`ProfileError`, or,
    with ``SIDECAR_REFERENCE_ON_ERROR=warn``, logs a warning and disables drift.
    """
    path = settings.reference_path
    if path is None:
        return None, ReferenceStatus("learning", warmup_target=settings.reference_warmup)
    try:
        profile = load_profile(path)
        names = settings.feature_names
        if names and set(names) != set(profile.features):
            raise ProfileError(
                f"{path}: profile features {sorted(profile.features)} do not match "
                f"SIDECAR_FEATURE_NAMES {sorted(names)}"
            )
    except ProfileError as exc:
        message = f"SIDECAR_REFERENCE_PATH: {exc}"
        if settings.reference_on_error == "fail":
            raise ProfileError(message) from exc
        logger.warning("%s; drift monitoring is disabled (SIDECAR_REFERENCE_ON_ERROR=warn)", message)
        return None, ReferenceStatus("disabled", path=path, problem=message)
    return profile, ReferenceStatus.of(profile, "file", path)


def build_components(settings: Settings) -> Components:
    profile, status = load_reference(settings)
    capture = Capture(
        build_sampler(
            settings.sampling,
            rate=settings.sample_rate,
            key=settings.sampling_key,
            stratify_by=settings.stratify_by,
            strata_max=settings.strata_max,
            stratum_min_per_window=settings.stratum_min_per_window,
            stratum_window_seconds=settings.stratum_window_seconds,
            importance_keep_all_below=settings.importance_keep_all_below,
            importance_exponent=settings.importance_exponent,
            trigger_hold_seconds=settings.trigger_hold_seconds,
            trigger_latency_seconds=settings.trigger_latency_seconds,
            trigger_error_count=settings.trigger_error_count,
            trigger_error_window_seconds=settings.trigger_error_window_seconds,
        ),
        model=settings.model_name,
        max_bytes=settings.capture_max_bytes,
        queue_size=settings.capture_queue_size,
    )
    sinks = build_sinks(
        settings.log_sink,
        source=f"ml-sidecar/{settings.model_name}",
        queue_size=settings.log_queue_size,
        file_max_bytes=settings.log_file_max_bytes,
        file_backups=settings.log_file_backups,
        http_timeout=settings.log_http_timeout_seconds,
    )
    monitor = Monitor(
        capture,
        AdapterOptions(
            protocol=settings.protocol,
            # Positional inputs are named by the settings, else by the reference profile.
            feature_names=settings.feature_names or (tuple(profile.features) if profile is not None else ()),
            features_pointer=settings.features_pointer,
            predictions_pointer=settings.predictions_pointer,
            scores_pointer=settings.scores_pointer,
            max_bytes=max(settings.capture_max_bytes, 1),
        ),
        Anonymizer(settings.pii_fields, cast("PiiMode", settings.pii_mode), settings.pii_salt),
        sinks,
        model_name=settings.model_name,
        model_version=settings.model_version,
        version_header=settings.model_version_header.encode("latin-1"),
    )
    rules = None
    if settings.quality_rules is not None:
        try:
            rules = load_rules(settings.quality_rules)
        except QualityRulesError as exc:
            raise QualityRulesError([f"SIDECAR_QUALITY_RULES: {problem}" for problem in exc.problems]) from exc
        for conflict in rules.conflicts(profile) if profile is not None else ():
            logger.warning("SIDECAR_QUALITY_RULES: %s", conflict)
    quality = QualityMonitor(
        profile,
        rules=rules,
        range_tolerance=settings.quality_range_tolerance,
        expected_rate=settings.expected_records_per_second,
        slice_seconds=settings.drift_slice_seconds,
    )
    monitors = DataMonitors(
        profile,
        status,
        quality,
        drift=DriftSettings(settings.drift_window_seconds, settings.drift_slice_seconds, settings.drift_min_samples),
        warmup=ReferenceLearner(target=settings.reference_warmup, bins=settings.drift_bins)
        if status.source == "learning"
        else None,
    )
    monitor.subscribe(monitors.observe)
    store, labels, retrainer, webhook, baseline, trained_at = _build_labels(settings, profile, monitors)
    monitor.subscribe(store.add)
    monitor.subscribe(labels.observe)
    return Components(capture, sinks, monitor, monitors, store, labels, retrainer, webhook, baseline, trained_at)


def _build_labels(
    settings: Settings, profile: ReferenceProfile | None, monitors: DataMonitors
) -> tuple[PredictionStore, LabelMonitor, Retrainer, UpstreamClient | None, dict[str, float], float | None]:
    task = cast("Task", settings.task)
    store = PredictionStore(
        settings.state_dir,
        segment_features=settings.store_segments,
        ttl_seconds=settings.label_ttl_seconds,
        max_rows=settings.store_max_rows,
    )
    # The profile's baseline (built with --target and --prediction), each metric overridable by the environment.
    baseline = {name: value for name, value in (profile.baseline if profile else {}).items() if name in METRICS[task]}
    baseline.update(settings.baseline)
    trained_at = model_trained_at(settings.model_trained_at, profile.created_at if profile is not None else None)
    webhook, path = None, "/"
    if settings.retrain_webhook_url is not None:
        base, path = split_webhook_url(settings.retrain_webhook_url)
        webhook = _notification_client(base)
    retrainer = Retrainer(
        settings.model_name,
        RetrainPolicy(
            interval_seconds=settings.retrain_interval,
            max_drop=settings.retrain_max_drop,
            min_new_labels=settings.retrain_min_new_labels,
            cooldown_seconds=settings.retrain_cooldown_seconds,
            on_drift=settings.retrain_on_drift,
        ),
        trained_at=trained_at,
        baseline=baseline,
        webhook=webhook,
        webhook_path=path,
    )
    labels = LabelMonitor(
        store,
        PerformanceConfig(
            task=task,
            positive_label=settings.positive_label,
            classes=settings.classes,
            ranking_k=settings.ranking_k,
            min_labels=settings.perf_min_labels,
        ),
        model=settings.model_name,
        window_seconds=settings.perf_window_seconds,
        max_rows=settings.perf_max_rows,
        retrainer=retrainer,
        data=monitors,
    )
    return store, labels, retrainer, webhook, baseline, trained_at


def build_alerting(
    settings: Settings, parts: Components, metrics: ProxyMetrics, flags: Flags, variant: str
) -> Alerting:
    """The alert engine over the rules file (or the built-in defaults), its notifier, and the hooks."""
    if settings.alert_rules is None:
        rules = default_rules(settings.runbook_base_url)
    else:
        try:
            rules = load_alert_rules(settings.alert_rules)
        except AlertRulesError as exc:
            raise AlertRulesError([f"SIDECAR_ALERT_RULES: {problem}" for problem in exc.problems]) from exc
    engine = AlertEngine(
        rules, model=settings.model_name, variant=variant, baseline_window_seconds=settings.alert_baseline_window
    )
    source = SignalSource(
        metrics,
        parts.monitors,
        parts.labels,
        baseline=parts.baseline,
        rate_window_seconds=settings.alert_rate_window_seconds,
        min_requests=settings.alert_min_requests,
        variant=variant,
    )
    parts.monitor.subscribe(source.observe)
    runner = AlertRunner(
        engine, source, sampler=parts.capture.sampler, flags=flags, auto_fallback=settings.auto_fallback
    )
    parts.retrainer.subscribe(runner.retraining_triggered)
    clients: list[UpstreamClient] = []
    manager = webhook = None
    manager_path, webhook_path = "/", "/"
    if settings.alertmanager_url is not None:
        base, manager_path = alertmanager_url(settings.alertmanager_url)
        manager = _notification_client(base)
        clients.append(manager)
    if settings.alert_webhook_url is not None:
        base, webhook_path = split_webhook_url(settings.alert_webhook_url)
        webhook = _notification_client(base)
        clients.append(webhook)
    notifier = Notifier(
        settings.model_name,
        firing=engine.firing,
        alertmanager=manager,
        alertmanager_path=manager_path,
        webhook=webhook,
        webhook_path=webhook_path,
        resend_interval=settings.alert_resend_seconds,
    )
    engine.subscribe(notifier.enqueue)
    return Alerting(engine, runner, notifier, AlertMetrics(engine), clients)


def _notification_client(base: str) -> UpstreamClient:
    """A small pool for an outgoing notification target (a webhook, Alertmanager): retried POSTs, never the hot path."""
    return UpstreamClient(base, timeout=10.0, connect_timeout=5.0, max_connections=4)
