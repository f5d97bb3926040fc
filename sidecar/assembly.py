"""Build the sidecar from the settings: the one place that knows every constructor.

:func:`assemble` turns a :class:`Settings` into every object of one sidecar,
wired together and registered with its own metrics registry, none of them
started: the upstream clients and readiness probe, the runtime flags, the
monitoring pipeline (:func:`build_components`: capture, sinks, data monitors,
prediction store, labels and retraining), the alerting (:func:`build_alerting`),
every metrics collector, and the proxy and admin apps. ``server`` binds the
sockets, starts and stops them in order, and drains.

Bad files (reference profile, quality rules, alert rules) become start-up
errors that name the variable.

Usage::

    built = assemble(settings)
    uvicorn.Config(built.proxy_app, ...), uvicorn.Config(built.admin_app, ...)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from sidecar.admin.app import create_admin_app
from sidecar.admin.health import Readiness
from sidecar.admin.history import History
from sidecar.alerting import AlertEngine, AlertMetrics, AlertRulesError, default_rules
from sidecar.alerting import load_rules as load_alert_rules
from sidecar.alerting.notify import Notifier, alertmanager_url
from sidecar.alerting.runner import AlertRunner
from sidecar.alerting.source import SignalSource
from sidecar.capture.handoff import Capture
from sidecar.capture.privacy import Anonymizer
from sidecar.capture.worker import CaptureWorker
from sidecar.config import Settings
from sidecar.experiments.api import experiment_routes
from sidecar.experiments.data import Routing
from sidecar.experiments.definition import Experiment, ExperimentError, load_experiment
from sidecar.experiments.metrics import ExperimentMetrics, ShadowMetrics
from sidecar.experiments.pairing import ShadowPairing
from sidecar.experiments.routing import Router
from sidecar.experiments.runner import ExperimentRunner, serving_of
from sidecar.experiments.shadow import MirrorQueue, Outcome, Shadow
from sidecar.experiments.shadow_runner import ShadowRunner
from sidecar.experiments.tap import ShadowTap
from sidecar.experiments.traffic import TrafficMetrics
from sidecar.experiments.units import FeatureUnit
from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.labels.ingest import LabelIngest
from sidecar.labels.metrics import LabelMetrics
from sidecar.labels.retraining import Retrainer, RetrainPolicy, model_trained_at, split_webhook_url
from sidecar.labels.window import LabelledWindow
from sidecar.monitoring.evaluator import DataMonitors, DriftSettings, ReferenceStatus
from sidecar.monitoring.learning import ReferenceLearner
from sidecar.monitoring.metrics import DataMetrics
from sidecar.performance import METRICS, PerformanceConfig
from sidecar.plane.front import create_front_app
from sidecar.plane.shadow import RemoteShadow
from sidecar.plane.supervisor import MonitorLink
from sidecar.prometheus import create_registry
from sidecar.protocols import AdapterOptions
from sidecar.quality import QualityMonitor, QualityRulesError, load_rules
from sidecar.records import ExchangeFields
from sidecar.reference import ProfileError, ReferenceProfile, load_profile
from sidecar.sampling import build_sampler
from sidecar.serving.arms import Mirror, Split
from sidecar.serving.flags import Flags, fallback_gauge
from sidecar.serving.metrics import ProxyMetrics, ServingCounts
from sidecar.serving.proxy import ProxyApp
from sidecar.serving.saturation import Saturation
from sidecar.sinks import LogMetrics, Sink, build_sinks
from sidecar.store import PredictionStore
from sidecar.upstream.client import UpstreamClient

__all__ = [
    "FALLBACK",
    "PRIMARY",
    "Alerting",
    "Assembly",
    "Components",
    "assemble",
    "build_alerting",
    "build_components",
    "load_reference",
    "register_monitoring",
]

logger = logging.getLogger("sidecar")

PRIMARY = "primary"
FALLBACK = "fallback"  # the variant of requests sent to SIDECAR_FALLBACK_URL
_READY_PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Components:
    """The monitoring pipeline, from the capture hand-off to retraining."""

    capture: Capture
    sinks: list[Sink]
    worker: CaptureWorker
    monitors: DataMonitors
    store: PredictionStore
    labels: LabelIngest
    performance: PerformanceEvaluator
    retrainer: Retrainer
    webhook: UpstreamClient | None  # the retraining webhook's client; the server opens and closes it
    baseline: dict[str, float]
    trained_at: float | None
    experiment: Experiment | None  # SIDECAR_EXPERIMENT_PATH's definition


@dataclass(frozen=True)
class Alerting:
    """The alert engine, the runner that feeds it signals, and the notifier that sends its transitions."""

    engine: AlertEngine
    runner: AlertRunner
    notifier: Notifier
    metrics: AlertMetrics
    clients: list[UpstreamClient]  # the notifier's; the server opens and closes them


@dataclass(frozen=True)
class Assembly:
    """Every object of one sidecar, wired and registered, none started.

    ``outgoing`` lists the clients of outgoing calls other than the primary
    upstream's (notification targets, the retraining webhook, the fallback
    model): the server opens them after the store and closes them last.

    Usage::

        built = assemble(settings)
        await built.client.open()
        for client in built.outgoing:
            await client.open()
    """

    registry: CollectorRegistry
    flags: Flags
    metrics: ProxyMetrics
    client: UpstreamClient
    readiness: Readiness
    capture: Capture  # the proxy's hand-off, in either mode
    # Inline (SIDECAR_MONITORING_PLANE=inline): the monitoring objects, in this process.
    components: Components | None
    alerting: Alerting | None
    # Process mode: the link to the monitoring process, which builds its own components.
    monitor: MonitorLink | None
    # Inline: the status page's ring of past evaluations; the server runs it beside the evaluators.
    history: History | None
    # Inline, with a split experiment: its evaluator, which the server runs beside the others.
    experiments: ExperimentRunner | None
    # Inline, with a shadow experiment: its comparison's evaluator, which the server runs beside the others.
    comparison: ShadowRunner | None
    # Inline, a shadow experiment's mirror to the challenger: the server starts it, and closes it after the
    # drain. In process mode the monitoring process sends the mirrors, which the link hands over.
    shadow: Shadow | None
    # Shadow mode: the proxy's load, sampled by the server while it runs (sidecar.serving.saturation).
    saturation: Saturation | None
    outgoing: tuple[UpstreamClient, ...]
    proxy_app: ProxyApp
    admin_app: Starlette


def assemble(settings: Settings) -> Assembly:
    """Build every object of one sidecar from ``settings``; bad files raise start-up errors naming the variable.

    With ``SIDECAR_MONITORING_PLANE=process`` (the default), the monitoring
    components are built here too, but only to check the files they read, so
    that a bad file still stops start-up with its message before anything
    runs; the monitoring process builds its own (:mod:`sidecar.plane`).
    """
    flags = Flags(fallback_available=settings.fallback_url is not None)
    parts = build_components(settings)
    primary = primary_variant(parts.experiment)
    variants = serving_variants(settings, parts.experiment)
    metrics = ProxyMetrics(settings.model_name, variants)
    client = _upstream_client(settings, settings.upstream_url)
    fallback = None if settings.fallback_url is None else _upstream_client(settings, settings.fallback_url)
    readiness = Readiness(
        client,
        settings.upstream_health_path,
        cache_seconds=settings.ready_cache_seconds,
        timeout=min(settings.upstream_timeout_seconds, _READY_PROBE_TIMEOUT),
    )
    trial = _serving_experiment(settings, parts, client, metrics)
    if settings.monitoring_plane == "process":
        build_alerting(settings, parts, metrics, flags, primary)  # checks the alert rules file
        return _assemble_serving(settings, flags, metrics, client, fallback, readiness, parts, variants, trial)
    router = trial.router
    experiments = build_experiment_runner(
        settings,
        parts,
        metrics,
        lambda: None if router is None else Routing(tuple(router.keyed), tuple(router.randomised)),
    )
    comparison = build_shadow_runner(settings, parts, metrics)
    alerting = build_alerting(settings, parts, metrics, flags, primary, experiments)
    registry = create_registry(settings.model_name, max_series=settings.metrics_max_series)
    model = settings.model_name
    # The hot path's own collector, and the cold gauge of the flag it follows...
    registry.register(metrics)
    registry.register(fallback_gauge(model, flags))
    if trial.metrics is not None:
        registry.register(trial.metrics)
    # ...and the monitoring side's.
    register_monitoring(registry, parts, alerting, model, experiments, comparison)
    proxy_app = _proxy_app(settings, client, metrics, parts.capture, fallback, flags, primary, trial)
    history = History(parts.monitors, parts.performance, metrics)
    admin_app = create_admin_app(
        registry,
        readiness,
        parts.monitors,
        parts.labels,
        parts.performance,
        alerting.engine,
        flags,
        admin_token=settings.admin_token,
        labels_max_bytes=settings.labels_max_bytes,
        history=history,
        eval_interval_seconds=settings.eval_interval_seconds,
        routes=experiment_routes_of(settings, parts, experiments or comparison),
        experiment=parts.experiment,
        experiments=experiments or comparison,
        shadow_outcomes=None if trial.mirror is None else _outcomes(trial.mirror.shadow),
    )
    outgoing = (*alerting.clients, *(c for c in (parts.webhook, fallback) if c is not None), *trial.clients)
    return Assembly(
        registry,
        flags,
        metrics,
        client,
        readiness,
        parts.capture,
        parts,
        alerting,
        None,
        history,
        experiments,
        comparison,
        None if trial.mirror is None else _local(trial.mirror.shadow),
        trial.saturation,
        outgoing,
        proxy_app,
        admin_app,
    )


def _assemble_serving(
    settings: Settings,
    flags: Flags,
    metrics: ProxyMetrics,
    client: UpstreamClient,
    fallback: UpstreamClient | None,
    readiness: Readiness,
    parts: Components,
    variants: tuple[str, ...],
    trial: ServingExperiment,
) -> Assembly:
    """The serving process of process mode: the proxy, the link to the monitoring process, the front admin app."""
    capture = parts.capture
    remote = trial.shadow
    assert remote is None or isinstance(remote, RemoteShadow)  # _serving_experiment's, in process mode
    link = MonitorLink(settings, capture, metrics, flags, variants, router=trial.router, shadow=remote)
    # The serving process's families are bounded by HTTP itself (status codes, variants): none is ever
    # cut, so mlsidecar_metrics_series_dropped comes from the monitoring process's registry alone.
    registry = create_registry(settings.model_name, max_series=settings.metrics_max_series, report_cuts=False)
    for collector in (metrics, fallback_gauge(settings.model_name, flags), link.restarts, link.up):
        registry.register(collector)
    if trial.metrics is not None:
        registry.register(trial.metrics)
    proxy_app = _proxy_app(settings, client, metrics, capture, fallback, flags, variants[0], trial)
    admin_app = create_front_app(
        registry,
        readiness,
        flags,
        link,
        admin_token=settings.admin_token,
        # The largest body an admin endpoint takes: labels; a flag's is 64 KiB.
        body_max_bytes=max(settings.labels_max_bytes, 64 << 10),
    )
    outgoing = (*(() if fallback is None else (fallback,)), *trial.clients)
    return Assembly(
        registry,
        flags,
        metrics,
        client,
        readiness,
        capture,
        None,
        None,
        link,
        None,
        None,
        None,
        None,
        trial.saturation,
        outgoing,
        proxy_app,
        admin_app,
    )


def register_monitoring(
    registry: CollectorRegistry,
    parts: Components,
    alerting: Alerting,
    model: str,
    experiments: ExperimentRunner | None = None,
    comparison: ShadowRunner | None = None,
) -> None:
    """Register the monitoring side's collectors, in whichever process it runs."""
    if experiments is not None:
        registry.register(ExperimentMetrics(experiments, model=model))
    if comparison is not None:
        registry.register(ShadowMetrics(comparison, model=model))
    for collector in (
        # The snapshots' own collectors, rendered at scrape time...
        parts.capture.metrics,
        LogMetrics(model, parts.sinks),
        DataMetrics(model, parts.monitors),
        LabelMetrics(
            parts.performance, parts.labels, parts.store, baseline=parts.baseline, trained_at=parts.trained_at
        ),
        alerting.metrics,
        # ...and the cold prometheus-client metrics, every child bound when its owner was built.
        parts.worker.metrics.errors,
        parts.retrainer.metrics.triggers,
        alerting.notifier.metrics.notifications,
    ):
        registry.register(collector)


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
    """The monitoring pipeline, each subscriber subscribed to the capture worker; bad files raise start-up errors."""
    profile, status = load_reference(settings)
    experiment = load_experiment_setting(settings)
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
        queue_max_bytes=settings.capture_queue_max_bytes,
        in_flight_max_bytes=settings.capture_in_flight_max_bytes,
    )
    sinks = build_sinks(
        settings.log_sink,
        source=f"ml-sidecar/{settings.model_name}",
        queue_size=settings.log_queue_size,
        queue_max_bytes=settings.log_queue_max_bytes,
        file_max_bytes=settings.log_file_max_bytes,
        file_backups=settings.log_file_backups,
        http_timeout=settings.log_http_timeout_seconds,
    )
    worker = CaptureWorker(
        capture,
        AdapterOptions(
            protocol=settings.protocol,
            # Positional inputs are named by the settings, else by the reference profile.
            feature_names=settings.feature_names or (tuple(profile.features) if profile is not None else ()),
            features_pointer=settings.features_pointer,
            predictions_pointer=settings.predictions_pointer,
            scores_pointer=settings.scores_pointer,
            max_bytes=max(settings.capture_max_bytes, 1),
            regression=settings.task == "regression",
        ),
        Anonymizer(settings.pii_fields, settings.pii_mode, settings.pii_salt),
        sinks,
        model_name=settings.model_name,
        model_version=settings.model_version,
        version_header=settings.model_version_header.encode("latin-1"),
        segment_by=None if experiment is None else experiment.segment_by,
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
        drift=DriftSettings(
            settings.drift_window_seconds,
            settings.drift_slice_seconds,
            settings.drift_min_samples,
            verdict=settings.drift_verdict,
            alpha=settings.drift_alpha,
            wasserstein=settings.drift_wasserstein_threshold,
            jensenshannon=settings.drift_jensenshannon_threshold,
        ),
        warmup=ReferenceLearner(
            target=settings.reference_warmup, bins=settings.drift_bins, max_features=settings.max_features
        )
        if status.source == "learning"
        else None,
    )
    worker.subscribe(monitors.observe)
    store = PredictionStore(
        settings.state_dir,
        url=settings.state_url_in_use(),
        # Scopes the leader lock and eviction to this model's rows when models share a database.
        model=settings.model_name,
        leader_interval=settings.eval_interval_seconds,
        segment_features=settings.store_segments,
        ttl_seconds=settings.label_ttl_seconds,
        max_rows=settings.store_max_rows,
        buffer_bytes=settings.store_buffer_max_bytes,
    )
    retrainer, webhook, baseline, trained_at = _build_retrainer(settings, profile)
    labels, performance = _build_labels(settings, store, retrainer, monitors, primary_variant(experiment))
    worker.subscribe(store.add)
    worker.subscribe(performance.observe)
    return Components(
        capture,
        sinks,
        worker,
        monitors,
        store,
        labels,
        performance,
        retrainer,
        webhook,
        baseline,
        trained_at,
        experiment,
    )


def load_experiment_setting(settings: Settings) -> Experiment | None:
    """``SIDECAR_EXPERIMENT_PATH``'s definition, or None; :class:`ExperimentError` naming the variable and key."""
    path = settings.experiment_path
    if path is None:
        return None
    try:
        experiment = load_experiment(path)
    except ExperimentError as exc:
        raise ExperimentError([f"SIDECAR_EXPERIMENT_PATH: {problem}" for problem in exc.problems]) from exc
    if any(v.name == FALLBACK for v in experiment.variants):
        # The arms are values of the request metrics' variant label, beside the fallback model's.
        raise ExperimentError(
            [f"SIDECAR_EXPERIMENT_PATH: {path}: variants.{FALLBACK}: the name is the fallback model's variant"]
        )
    return experiment


def primary_variant(experiment: Experiment | None) -> str:
    """The variant the primary upstream's requests carry: the control arm's name in an experiment."""
    return PRIMARY if experiment is None else experiment.control.name


def serving_variants(settings: Settings, experiment: Experiment | None) -> tuple[str, ...]:
    """The request metrics' variants: every arm of a split experiment, else the primary; then the fallback."""
    if experiment is not None and experiment.mode == "split":
        arms = tuple(v.name for v in experiment.variants)
    else:
        arms = (primary_variant(experiment),)
    return (*arms, FALLBACK) if settings.fallback_url else arms


def _build_retrainer(
    settings: Settings, profile: ReferenceProfile | None
) -> tuple[Retrainer, UpstreamClient | None, dict[str, float], float | None]:
    """The retrainer, its webhook's client (if any), the performance baseline and the model's training time."""
    task = settings.task
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
    return retrainer, webhook, baseline, trained_at


def _build_labels(
    settings: Settings, store: PredictionStore, retrainer: Retrainer, monitors: DataMonitors, primary: str
) -> tuple[LabelIngest, PerformanceEvaluator]:
    """The label ingest and the performance evaluator, sharing one labelled window."""
    config = PerformanceConfig(
        task=settings.task,
        positive_label=settings.positive_label,
        classes=settings.classes,
        ranking_k=settings.ranking_k,
        min_labels=settings.perf_min_labels,
    )
    window = LabelledWindow(settings.perf_window_seconds, settings.perf_max_rows)
    model = settings.model_name
    labels = LabelIngest(store, config, window, model=model, retrainer=retrainer, data=monitors)
    performance = PerformanceEvaluator(
        store,
        config,
        window,
        labels,
        model=model,
        retrainer=retrainer,
        data=monitors,
        primary_variant=primary,
        fleet=store.shared,
    )
    return labels, performance


def build_experiment_runner(
    settings: Settings, parts: Components, counts: ServingCounts, routing: Callable[[], Routing | None]
) -> ExperimentRunner | None:
    """The evaluator of a split experiment, over the proxy's ``counts`` and its router's ``routing``; else None.

    A shadow experiment has no arms to compare by outcome: nothing to run.
    """
    experiment = parts.experiment
    if experiment is None or experiment.mode != "split":
        return None
    arms = [v.name for v in experiment.variants]
    return ExperimentRunner(
        parts.store,
        experiment,
        parts.performance.config,
        routing=routing,
        serving=lambda: serving_of(counts, arms),
        model=settings.model_name,
    )


def build_shadow_runner(settings: Settings, parts: Components, counts: ServingCounts) -> ShadowRunner | None:
    """A shadow experiment's comparison, over the proxy's ``counts`` of control; else None.

    Its pairing takes the challenger's answers from the capture worker (the tap puts them on the capture
    hand-off, :mod:`sidecar.experiments.tap`) and stores them beside control's predictions.
    """
    experiment = parts.experiment
    if experiment is None or experiment.mode != "shadow":
        return None
    pairing = ShadowPairing(experiment, parts.worker.options, parts.store.add_shadow, model_name=settings.model_name)
    parts.worker.subscribe_shadow(pairing.observe)
    control = [experiment.control.name]
    return ShadowRunner(
        parts.store,
        experiment,
        parts.performance.config,
        pairing=pairing,
        serving=lambda: serving_of(counts, control)[0],
        model=settings.model_name,
        min_samples=settings.drift_min_samples,
        bins=settings.drift_bins,
    )


def experiment_routes_of(
    settings: Settings, parts: Components, runner: ExperimentRunner | ShadowRunner | None
) -> list[Route]:
    """``GET /api/v1/experiments`` and ``POST /api/v1/outcomes`` for the admin app, experiment or none."""
    return experiment_routes(
        runner,
        parts.store,
        parts.experiment,
        admin_token=settings.admin_token,
        max_bytes=settings.labels_max_bytes,
    )


def build_alerting(
    settings: Settings,
    parts: Components,
    metrics: ServingCounts,
    flags: Flags,
    variant: str,
    experiments: ExperimentRunner | None = None,
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
        parts.performance,
        baseline=parts.baseline,
        rate_window_seconds=settings.alert_rate_window_seconds,
        min_requests=settings.alert_min_requests,
        variant=variant,
        experiment_decision=None if experiments is None else experiments.decision,
    )
    parts.worker.subscribe(source.observe)
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


def _proxy_app(
    settings: Settings,
    client: UpstreamClient,
    metrics: ProxyMetrics,
    capture: Capture,
    fallback: UpstreamClient | None,
    flags: Flags,
    variant: str,
    trial: ServingExperiment,
) -> ProxyApp:
    """The proxy app, the same in both monitoring modes."""
    return ProxyApp(
        client,
        metrics,
        capture,
        variant=variant,
        fallback=None if fallback is None else (fallback, FALLBACK, flags),
        send_timeout=settings.send_timeout_seconds,
        split=trial.split,
        mirror=trial.mirror,
    )


@dataclass(frozen=True)
class ServingExperiment:
    """The experiment's parts in the serving process: a split's arms, or a shadow's mirror; neither without one."""

    split: Split | None = None
    mirror: Mirror | None = None
    # The treatments' upstreams (split mode): opened and closed with the other outgoing clients.
    clients: tuple[UpstreamClient, ...] = ()
    metrics: TrafficMetrics | None = None
    # Shadow mode: the proxy's load, which the server samples, and while it is high no request is mirrored.
    saturation: Saturation | None = None

    @property
    def router(self) -> Router | None:
        return None if self.split is None else self.split.router

    @property
    def shadow(self) -> MirrorQueue | None:
        return None if self.mirror is None else self.mirror.shadow


def _local(shadow: MirrorQueue) -> Shadow:
    assert isinstance(shadow, Shadow)  # inline mode's: _serving_experiment builds it so
    return shadow


def _outcomes(shadow: MirrorQueue) -> Callable[[], Mapping[Outcome, int]]:
    """The shadow's mirrors by outcome, read by the status page."""
    return shadow.totals


def build_shadow(
    settings: Settings,
    parts: Components,
    put: Callable[[ExchangeFields], bool],
    saturation: Saturation | None = None,
) -> tuple[Shadow, ShadowTap] | None:
    """A shadow experiment's sender of mirrors to the challenger, and its tap, which turns each answer into an
    exchange for the comparison and gives it to ``put`` (:mod:`sidecar.experiments.tap`); else None.

    The requests it is given carry what control's capture kept of them (:meth:`MirrorQueue.put`, in the
    monitoring process), or it finds that itself when the proxy submits to it (inline, :func:`_serving_experiment`).
    """
    experiment = parts.experiment
    if experiment is None or experiment.mode != "shadow":
        return None
    challenger = experiment.treatments[0]
    assert challenger.upstream is not None  # a treatment has one: the definition requires it
    tap = ShadowTap(put, variant=challenger.name)
    shadow = Shadow(
        challenger.upstream,
        experiment=experiment.name,
        on_response=tap,
        captured=parts.capture.captured,
        concurrency=settings.shadow_concurrency,
        timeout=settings.shadow_timeout_seconds,
        queue_size=settings.shadow_queue_size,
        queue_max_bytes=settings.shadow_queue_max_bytes,
        saturation=saturation,
    )
    return shadow, tap


def _serving_experiment(
    settings: Settings, parts: Components, client: UpstreamClient, metrics: ProxyMetrics
) -> ServingExperiment:
    """The proxy's side of ``SIDECAR_EXPERIMENT_PATH``: each arm's upstream, or the challenger's mirror."""
    experiment = parts.experiment
    if experiment is None:
        return ServingExperiment()
    model = settings.model_name
    if experiment.mode == "shadow":
        mirror: MirrorQueue
        # Mirrors are best-effort: while the proxy has no time to spare, they are dropped and counted.
        saturation = None if settings.shadow_max_cpu == 0 else Saturation(settings.shadow_max_cpu)
        if settings.monitoring_plane == "process":
            # The proxy only queues the mirrors; the monitoring process sends them (sidecar.plane.shadow).
            mirror = RemoteShadow(
                experiment=experiment.name,
                queue_size=settings.shadow_queue_size,
                queue_max_bytes=settings.shadow_queue_max_bytes,
                captured=parts.capture.captured,
                saturation=saturation,
            )
            traffic = TrafficMetrics(model, experiment, shadow=mirror)
        else:
            # Each answer goes onto the capture hand-off's spare half, for the comparison on the worker.
            built = build_shadow(settings, parts, parts.capture.queue.put_spare, saturation)
            assert built is not None  # shadow mode
            mirror, tap = built
            traffic = TrafficMetrics(model, experiment, shadow=mirror, tap=tap)
        return ServingExperiment(
            mirror=Mirror(mirror, max_body_bytes=settings.shadow_queue_max_bytes),
            metrics=traffic,
            saturation=saturation,
        )
    clients = tuple(
        client if v.upstream is None else _upstream_client(settings, v.upstream) for v in experiment.variants
    )
    key = experiment.assignment.key
    # A feature key's unit is read from the body by the capture worker's own adapters, so that the unit a
    # request is routed by is the one its record carries.
    units = FeatureUnit(key[1], parts.worker.options) if key is not None and key[0] == "feature" else None
    router = Router(experiment)
    return ServingExperiment(
        split=Split(router, clients, metrics, units=units),
        clients=tuple(c for c in clients if c is not client),
        metrics=TrafficMetrics(model, experiment, router=router),
    )


def _upstream_client(settings: Settings, url: str) -> UpstreamClient:
    """The pool for the model server (primary or fallback): the hot path's timeouts and limits."""
    return UpstreamClient(
        url,
        timeout=settings.upstream_timeout_seconds,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        max_connections=settings.upstream_max_connections,
        pool_timeout=settings.upstream_pool_timeout_seconds,
    )


def _notification_client(base: str) -> UpstreamClient:
    """A small pool for an outgoing notification target (a webhook, Alertmanager): retried POSTs, never the hot path."""
    return UpstreamClient(base, timeout=10.0, connect_timeout=5.0, max_connections=4)
