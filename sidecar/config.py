"""Settings: one frozen object, parsed once from the environment.

This is the only module that reads ``os.environ``; everything else receives a
:class:`Settings`. Parsing reports every problem at once, each naming the
variable, its value and what is allowed, so an operator fixes a manifest in one
pass rather than one crash-loop per typo.

A choice is a ``Literal`` type whose values are the allowed names, as uvicorn
types its options; the tuple a parser checks against is derived from it with
``get_args``, so the two cannot drift apart. This module imports only the
standard library and light modules (:mod:`sidecar.syntax`, durations, records):
checking a configuration loads no sink, HTTP client or numpy
(``tests/test_layering.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from sidecar.durations import parse_duration
from sidecar.exceptions import ConfigError
from sidecar.records import parse_rfc3339
from sidecar.syntax.jsonpointer import parse_pointer
from sidecar.syntax.performance import METRICS, TASKS, Task, check_classes
from sidecar.syntax.privacy import PII_MODES, PiiMode, check_pii, parse_fields
from sidecar.syntax.protocols import PROTOCOLS, Protocol
from sidecar.syntax.sampling import STRATEGIES, Strategy, parse_source
from sidecar.syntax.sinks import parse_sink_spec
from sidecar.syntax.store import mask_url, parse_state_url

__all__ = ["Settings", "LogLevel", "LOG_LEVELS", "ReferenceOnError", "REFERENCE_ON_ERROR", "PREFIX"]

PREFIX = "SIDECAR_"

LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
MonitoringPlane = Literal["process", "inline"]
MONITORING_PLANES: tuple[MonitoringPlane, ...] = get_args(MonitoringPlane)
# What a missing, corrupt or mismatched reference profile does: stop start-up, or log and disable drift.
ReferenceOnError = Literal["fail", "warn"]
REFERENCE_ON_ERROR: tuple[ReferenceOnError, ...] = get_args(ReferenceOnError)

T = TypeVar("T")
C = TypeVar("C", bound=str)


class _Invalid(ValueError):
    """A value that does not parse; the message says what is allowed."""


def _parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise _Invalid(f"expected an integer from {low} to {high}") from None
        if not low <= value <= high:
            raise _Invalid(f"expected an integer from {low} to {high}")
        return value

    return parse


def _parse_float(low: float, high: float = math.inf, *, low_open: bool = False) -> Callable[[str], float]:
    bound = f"greater than {low:g}" if low_open else f"at least {low:g}"
    allowed = f"expected a number {bound}" + ("" if high == math.inf else f" and at most {high:g}")

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise _Invalid(allowed) from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise _Invalid(allowed)
        return value

    return parse


def _parse_choice(choices: tuple[C, ...]) -> Callable[[str], C]:
    """A parser of one of ``choices``, the ``get_args`` of a ``Literal``, so it returns that Literal type."""
    by_name: dict[str, C] = {choice: choice for choice in choices}

    def parse(raw: str) -> C:
        value = by_name.get(raw.strip().lower())
        if value is None:
            raise _Invalid("expected one of " + ", ".join(choices))
        return value

    return parse


def _http_url(raw: str, example: str, *, base: bool) -> str:
    """An http(s) URL with a host and a valid port; a ``base`` (paths get appended) has no query or fragment."""
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"expected an http:// or https:// URL with a host, e.g. {example}")
    if base and (parts.query or parts.fragment):
        raise _Invalid("expected a URL without query string or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise _Invalid("expected a URL whose port is from 1 to 65535") from None
    # The request path is appended to a base, so a trailing slash would double it.
    return value.rstrip("/") if base else value


def _parse_http_url(raw: str) -> str:
    return _http_url(raw, "http://127.0.0.1:8080", base=True)


def _parse_webhook_url(raw: str) -> str:
    return _http_url(raw, "https://ci.example/hooks/retrain", base=False)


def _parse_duration(low: float, high: float) -> Callable[[str], float]:
    """Seconds, given as a number of seconds or with units: ``90``, ``30m``, ``12h``, ``7d``, ``2w``."""
    allowed = f"expected a duration from {low:g}s to {high / 86_400:g}d, in seconds or with units s, m, h, d, w"

    def parse(raw: str) -> float:
        try:
            value = parse_duration(raw)
        except ValueError:
            raise _Invalid(allowed) from None
        if not low <= value <= high:
            raise _Invalid(allowed)
        return value

    return parse


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise _Invalid("expected true or false")


def _parse_path(raw: str) -> str:
    value = raw.strip()
    if not value.startswith("/"):
        raise _Invalid("expected a path starting with '/', e.g. /v2/health/ready")
    return value


def _parse_header_name(raw: str) -> str:
    value = raw.strip().lower()
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise _Invalid("expected an HTTP header name, e.g. x-model-version")
    return value


def _parse_text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise _Invalid("expected a non-empty string")
    return value


def _parse_label_value(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 128 or not all(c.isalnum() or c in "-_.:" for c in value):
        raise _Invalid("expected 1 to 128 characters from letters, digits and '-_.:'")
    return value


def _parse_names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(","))
    if not all(names):
        raise _Invalid("expected comma-separated names, e.g. age,income,country; found an empty name")
    return names


def _validated(check: Callable[[str], object]) -> Callable[[str], str]:
    """A parser that keeps the text once ``check`` (a validator from the module that uses it) accepts it."""

    def parse(raw: str) -> str:
        value = raw.strip()
        try:
            check(value)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
        return value

    return parse


def _converted(convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        try:
            return convert(raw.strip())
        except ValueError as exc:
            raise _Invalid(str(exc)) from None

    return parse


def _show(value: object) -> str:
    """A set value as its variable would say it, so that parsing the text gives the value back.

    Names joined by commas as the parsers split them, booleans as true/false,
    and numbers as short as they stay exact: ``30`` for 30.0, ``0.1`` for 0.1.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # repr is the shortest text that parses back to the same float.
        return repr(value).removesuffix(".0")
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _show_rfc3339(seconds: float) -> str:
    """Unix seconds as the RFC 3339 UTC time they were parsed from, e.g. ``2026-11-01T00:00:00Z``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class _Field:
    parse: Callable[[str], Any]
    secret: bool = False
    required: bool = False
    # A family of variables, SIDECAR_<NAME>_<KEY>, gathered into a tuple of (key, value) pairs.
    family: bool = False
    # How describe() writes a set value; the inverse of parse.
    show: Callable[[Any], str] = _show
    # A value that holds a secret inside it (a URL's password): shown through this rather than as ***.
    mask: Callable[[str], str] | None = None


def _env(
    parse: Callable[[str], T],
    default: T,
    *,
    secret: bool = False,
    show: Callable[[Any], str] = _show,
    mask: Callable[[str], str] | None = None,
) -> T:
    # The dataclass default is the real default; the parser is kept in metadata
    # so adding a setting is one line in one place.
    return dataclasses.field(default=default, metadata={"field": _Field(parse, secret=secret, show=show, mask=mask)})


def _family(parse: Callable[[str], T]) -> tuple[tuple[str, T], ...]:
    return dataclasses.field(default=(), metadata={"field": _Field(parse, family=True)})


def variable(name: str) -> str:
    """The environment variable of a settings field, ``SIDECAR_<KEY>`` standing for a family."""
    return PREFIX + name.upper()


def _required(parse: Callable[[str], T]) -> T:
    return dataclasses.field(metadata={"field": _Field(parse, required=True)})  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Settings:
    """The sidecar's whole configuration.

    Each field ``name`` is read from ``SIDECAR_<NAME>``.

    Usage::

        settings = Settings.from_env({"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:8080"})
        settings.listen_port  # 8000
    """

    upstream_url: str = _required(_parse_http_url)
    listen_host: str = _env(_parse_text, "0.0.0.0")
    listen_port: int = _env(_parse_int(0, 65535), 8000)
    admin_host: str = _env(_parse_text, "0.0.0.0")
    admin_port: int = _env(_parse_int(0, 65535), 9100)
    # Client limits on both ports (sidecar.serving.limits); the defaults fit 1024 file descriptors.
    max_header_bytes: int = _env(_parse_int(1024, 16 << 20), 64 << 10)
    max_headers: int = _env(_parse_int(1, 10_000), 100)
    header_timeout_seconds: float = _env(_parse_float(0.0, 3600.0, low_open=True), 10.0)
    max_connections: int = _env(_parse_int(1, 1_000_000), 512)
    admin_max_connections: int = _env(_parse_int(1, 1_000_000), 64)
    model_name: str = _env(_parse_label_value, "model")
    upstream_timeout_seconds: float = _env(_parse_float(0.0, low_open=True), 30.0)
    upstream_connect_timeout_seconds: float = _env(_parse_float(0.0, low_open=True), 5.0)
    upstream_max_connections: int = _env(_parse_int(1, 100_000), 256)
    upstream_pool_timeout_seconds: float = _env(_parse_float(0.0, low_open=True), 5.0)
    send_timeout_seconds: float = _env(_parse_float(0.0, low_open=True), 30.0)
    upstream_health_path: str = _env(_parse_path, "/")
    ready_cache_seconds: float = _env(_parse_float(0.0), 2.0)
    shutdown_timeout_seconds: float = _env(_parse_float(0.0), 30.0)
    flush_timeout_seconds: float = _env(_parse_float(0.0), 5.0)
    admin_token: str | None = _env(_parse_text, None, secret=True)
    metrics_max_series: int = _env(_parse_int(100, 10_000_000), 20_000)
    log_level: LogLevel = _env(_parse_choice(LOG_LEVELS), "info")
    # process: monitoring runs in a child process, off the proxy's loop and GIL (sidecar.plane);
    # inline: on the proxy's own loop, for a pod limited to one CPU, where a second process gains nothing.
    monitoring_plane: MonitoringPlane = _env(_parse_choice(MONITORING_PLANES), "process")
    # Capture: payload adapters.
    protocol: Protocol = _env(_parse_choice(PROTOCOLS), "auto")
    feature_names: tuple[str, ...] = _env(_parse_names, ())
    features_pointer: str | None = _env(_validated(parse_pointer), None)
    predictions_pointer: str | None = _env(_validated(parse_pointer), None)
    scores_pointer: str | None = _env(_validated(parse_pointer), None)
    model_version: str | None = _env(_parse_text, None)
    model_version_header: str = _env(_parse_header_name, "x-model-version")
    capture_max_bytes: int = _env(_parse_int(0, 1 << 30), 1 << 20)
    capture_queue_size: int = _env(_parse_int(1, 10_000_000), 10_000)
    # Memory bounds of the payload buffers; the example manifest's limit is measured with them full.
    capture_queue_max_bytes: int = _env(_parse_int(1024, 1 << 40), 32 << 20)
    capture_in_flight_max_bytes: int = _env(_parse_int(1024, 1 << 40), 32 << 20)
    # Capture: sampling.
    sampling: Strategy = _env(_parse_choice(STRATEGIES), "random")
    sample_rate: float = _env(_parse_float(0.0, 1.0), 1.0)
    sampling_key: str | None = _env(_validated(parse_source), None)
    stratify_by: str | None = _env(_validated(parse_source), None)
    stratum_min_per_window: int = _env(_parse_int(0, 1_000_000), 10)
    stratum_window_seconds: float = _env(_parse_float(1.0), 60.0)
    strata_max: int = _env(_parse_int(1, 100_000), 100)
    importance_keep_all_below: float = _env(_parse_float(0.0, 0.99), 0.5)
    importance_exponent: float = _env(_parse_float(0.1, 10.0), 1.0)
    trigger_hold_seconds: float = _env(_parse_float(0.0, 86_400.0), 300.0)
    trigger_latency_seconds: float | None = _env(_parse_float(0.0, low_open=True), None)
    trigger_error_count: int = _env(_parse_int(1, 10_000), 5)
    trigger_error_window_seconds: float = _env(_parse_float(0.0, low_open=True), 10.0)
    # Data monitoring: reference, drift, quality.
    reference_path: str | None = _env(_parse_text, None)
    reference_warmup: int = _env(_parse_int(10, 10_000_000), 1000)
    reference_on_error: ReferenceOnError = _env(_parse_choice(REFERENCE_ON_ERROR), "fail")
    max_features: int = _env(_parse_int(1, 10_000), 200)
    drift_bins: int = _env(_parse_int(2, 100), 10)
    drift_window_seconds: float = _env(_parse_float(1.0, 30 * 86_400.0), 3600.0)
    drift_slice_seconds: float = _env(_parse_float(1.0, 86_400.0), 60.0)
    drift_min_samples: int = _env(_parse_int(1, 100_000_000), 200)
    # The verdict rule: real (Holm-corrected p) and material (effect size), or PSI alone (sidecar/drift/rule.py).
    drift_verdict: Literal["combined", "psi"] = _env(_parse_choice(("combined", "psi")), "combined")
    drift_alpha: float = _env(_parse_float(0.0, 0.5, low_open=True), 0.05)
    drift_wasserstein_threshold: float = _env(_parse_float(0.0, 10.0, low_open=True), 0.1)
    drift_jensenshannon_threshold: float = _env(_parse_float(0.0, 0.8, low_open=True), 0.1)
    eval_interval_seconds: float = _env(_parse_float(0.1, 3600.0), 15.0)
    quality_rules: str | None = _env(_parse_text, None)
    quality_range_tolerance: float = _env(_parse_float(0.0, 100.0), 0.1)
    expected_records_per_second: float | None = _env(_parse_float(0.0, low_open=True), None)
    # Capture: prediction logs and privacy.
    log_sink: tuple[str, ...] = _env(_converted(parse_sink_spec), ("stdout",))
    log_file_max_bytes: int = _env(_parse_int(0, 1 << 40), 100 << 20)
    log_file_backups: int = _env(_parse_int(0, 1000), 5)
    log_queue_size: int = _env(_parse_int(1, 10_000_000), 10_000)
    log_queue_max_bytes: int = _env(_parse_int(1024, 1 << 40), 8 << 20)
    log_http_timeout_seconds: float = _env(_parse_float(0.0, low_open=True), 5.0)
    pii_fields: tuple[str, ...] = _env(_converted(parse_fields), ())
    pii_mode: PiiMode = _env(_parse_choice(PII_MODES), "hash")
    pii_salt: str | None = _env(_parse_text, None, secret=True)
    # Delayed labels: the prediction store and the labels API.
    state_dir: str = _env(_parse_text, "ml-sidecar-state")
    # The store shared by the replicas (PostgreSQL); unset, the SQLite file in state_dir. The URL may
    # also come from a file (a mounted Kubernetes Secret): read it with state_url_in_use().
    state_url: str | None = _env(_validated(parse_state_url), None, mask=mask_url)
    state_url_file: str | None = _env(_parse_text, None)
    label_ttl_seconds: float = _env(_parse_float(60.0, 366 * 86_400.0), 30 * 86_400.0)
    store_max_rows: int = _env(_parse_int(1_000, 1_000_000_000), 1_000_000)
    store_buffer_max_bytes: int = _env(_parse_int(1024, 1 << 40), 8 << 20)
    store_segments: tuple[str, ...] = _env(_parse_names, ())
    labels_max_bytes: int = _env(_parse_int(1024, 1 << 30), 32 << 20)
    # Online performance.
    task: Task = _env(_parse_choice(TASKS), "classification")
    positive_label: str | None = _env(_parse_text, None)
    classes: tuple[str, ...] | None = _env(_parse_names, None)
    ranking_k: int = _env(_parse_int(1, 10_000), 10)
    perf_min_labels: int = _env(_parse_int(1, 100_000_000), 100)
    perf_window_seconds: float = _env(_parse_float(60.0, 366 * 86_400.0), 7 * 86_400.0)
    perf_max_rows: int = _env(_parse_int(1_000, 10_000_000), 200_000)
    # Staleness and retraining triggers.
    model_trained_at: float | None = _env(_converted(parse_rfc3339), None, show=_show_rfc3339)
    baseline: tuple[tuple[str, float], ...] = _family(_parse_float(0.0))
    retrain_interval: float | None = _env(_parse_duration(60.0, 3650 * 86_400.0), None)
    retrain_max_drop: float | None = _env(_parse_float(0.0, 10.0, low_open=True), None)
    retrain_on_drift: bool = _env(_parse_bool, True)
    retrain_min_new_labels: int | None = _env(_parse_int(1, 1_000_000_000), None)
    retrain_cooldown_seconds: float = _env(_parse_float(0.0, 366 * 86_400.0), 3600.0)
    retrain_webhook_url: str | None = _env(_parse_webhook_url, None)
    # Alerting and incident mitigation.
    alert_rules: str | None = _env(_parse_text, None)
    alert_baseline_window: float = _env(_parse_duration(60.0, 30 * 86_400.0), 86_400.0)
    alert_rate_window_seconds: float = _env(_parse_float(1.0, 86_400.0), 300.0)
    alert_min_requests: int = _env(_parse_int(1, 1_000_000), 20)
    alertmanager_url: str | None = _env(_parse_webhook_url, None)
    alert_webhook_url: str | None = _env(_parse_webhook_url, None)
    alert_resend_seconds: float = _env(_parse_float(1.0, 3600.0), 30.0)
    # Unset, the built-in rules link their runbooks relative to the docs, deploy/runbooks/<alert>.md.
    runbook_base_url: str | None = _env(_parse_text, None)
    fallback_url: str | None = _env(_parse_http_url, None)
    auto_fallback: bool = _env(_parse_bool, False)
    # A/B experiments and shadow traffic (sidecar.experiments): the definition file; unset, none.
    experiment_path: str | None = _env(_parse_text, None)
    # The analysis reads the store's sums (about a second at 200k predictions), so less often than drift.
    experiment_interval_seconds: float = _env(_parse_float(1.0, 86_400.0), 60.0)
    # Shadow mode's mirrors: in flight, each one's deadline, and the queue's bounds (in mirrors and bytes).
    shadow_concurrency: int = _env(_parse_int(1, 10_000), 8)
    shadow_timeout_seconds: float = _env(_parse_float(0.0, 3600.0, low_open=True), 10.0)
    shadow_queue_size: int = _env(_parse_int(1, 10_000_000), 1000)
    shadow_queue_max_bytes: int = _env(_parse_int(1024, 1 << 40), 16 << 20)
    # The serving process's CPU, as a share of one core, above which mirrors are dropped (serving comes
    # first; sidecar.serving.saturation); 0: never.
    shadow_max_cpu: float = _env(_parse_float(0.0), 0.8)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse settings from ``environ`` (``os.environ`` when omitted).

        Raises :class:`ConfigError` listing every invalid or missing variable.
        Empty values count as unset, as in most container runtimes' templating.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in dataclasses.fields(cls):
            spec: _Field = f.metadata["field"]
            var = PREFIX + f.name.upper()
            if spec.family:
                values[f.name] = _parse_family(env, var + "_", spec, problems)
                continue
            raw = env.get(var, "")
            if raw.strip() == "":
                if spec.required:
                    problems.append(f"{var} is required but not set")
                continue
            try:
                values[f.name] = spec.parse(raw)
            except _Invalid as exc:
                shown = spec.mask(raw) if spec.mask else "***" if spec.secret else raw
                problems.append(f"{var}={shown!r} is not valid: {exc}")
        problems += _cross_checks({f.name: values.get(f.name, f.default) for f in dataclasses.fields(cls)})
        if problems:
            raise ConfigError(problems)
        return cls(**values)

    @classmethod
    def unknown_variables(cls, environ: Mapping[str, str] | None = None) -> list[str]:
        """``SIDECAR_*`` variables that name no setting, most likely typos.

        These are warnings, not errors: Kubernetes injects ``<SERVICE>_PORT``
        style variables, so a Service named ``sidecar`` would otherwise stop
        every pod from starting.
        """
        env = os.environ if environ is None else environ
        known = {PREFIX + f.name.upper() for f in dataclasses.fields(cls)}
        families = tuple(PREFIX + f.name.upper() + "_" for f in dataclasses.fields(cls) if f.metadata["field"].family)
        # A family member with a wrong key is an error of from_env, not a warning here.
        return sorted(
            var for var in env if var.startswith(PREFIX) and var not in known and not var.startswith(families)
        )

    @classmethod
    def closest_variable(cls, var: str) -> str | None:
        """The setting that an unknown ``var`` most likely misspells, or None when none is close.

        Only the part after ``SIDECAR_`` is compared, since every name shares
        the prefix; Kubernetes' ``SIDECAR_SERVICE_HOST`` and the like match nothing.

        >>> Settings.closest_variable("SIDECAR_SAMPLE_RAT")
        'SIDECAR_SAMPLE_RATE'
        """
        names = [f.name.upper() for f in dataclasses.fields(cls)]
        close = difflib.get_close_matches(var.removeprefix(PREFIX), names, n=1, cutoff=0.8)
        return PREFIX + close[0] if close else None

    def state_url_in_use(self) -> str | None:
        """The store's URL, from ``SIDECAR_STATE_URL`` or read from ``SIDECAR_STATE_URL_FILE``; None for SQLite.

        The file is read again on each call, so a rotated Secret is taken at
        the next start. :meth:`from_env` has checked it; a file changed since
        raises :class:`ConfigError` naming the variable.
        """
        if self.state_url_file is None:
            return self.state_url
        try:
            return _read_state_url(self.state_url_file)
        except _Invalid as exc:
            raise ConfigError([f"SIDECAR_STATE_URL_FILE={self.state_url_file!r} is not valid: {exc}"]) from None

    def describe(self) -> dict[str, str]:
        """The effective configuration by variable name, secrets masked.

        Each value is written as its variable takes it (``stdout,file:/p``,
        ``true``, ``30``, empty for unset): set back in the environment, every
        value but a masked secret gives the same setting.
        """
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            spec: _Field = f.metadata["field"]
            value = getattr(self, f.name)
            if spec.family:
                for key, member in value:
                    out[f"{PREFIX}{f.name.upper()}_{key.upper()}"] = spec.show(member)
            elif value is None:
                out[PREFIX + f.name.upper()] = ""
            elif spec.mask is not None:
                out[PREFIX + f.name.upper()] = spec.mask(spec.show(value))
            else:
                out[PREFIX + f.name.upper()] = "***" if spec.secret else spec.show(value)
        return out


def _parse_family(
    env: Mapping[str, str], prefix: str, spec: _Field, problems: list[str]
) -> tuple[tuple[str, Any], ...]:
    """``SIDECAR_BASELINE_ACCURACY=0.91`` and its siblings as ``(("accuracy", 0.91), ...)``, sorted by key."""
    members: list[tuple[str, Any]] = []
    for var in sorted(env):
        raw = env[var]
        if not var.startswith(prefix) or raw.strip() == "":
            continue
        key = var[len(prefix) :].lower()
        try:
            members.append((key, spec.parse(raw)))
        except _Invalid as exc:
            problems.append(f"{var}={raw!r} is not valid: {exc}")
    return tuple(members)


def _cross_checks(values: dict[str, Any]) -> list[str]:
    """Problems that involve more than one variable, judged on the values that did parse."""
    problems = check_pii(values["pii_fields"], values["pii_mode"], values["pii_salt"])
    if values["sampling"] == "stratified" and values["stratify_by"] is None:
        problems.append(
            "SIDECAR_STRATIFY_BY is required when SIDECAR_SAMPLING=stratified, e.g. header:x-segment or feature:country"
        )
    window, slice_ = values["drift_window_seconds"], values["drift_slice_seconds"]
    if slice_ > window or window / slice_ > 10_000:
        problems.append(
            f"SIDECAR_DRIFT_SLICE_SECONDS={slice_:g} does not fit SIDECAR_DRIFT_WINDOW_SECONDS={window:g}: "
            "expected a slice no longer than the window and at most 10000 slices per window"
        )
    problems += _performance_checks(values)
    problems += _state_url_checks(values["state_url"], values["state_url_file"])
    if values["auto_fallback"] and values["fallback_url"] is None:
        problems.append("SIDECAR_AUTO_FALLBACK=true needs SIDECAR_FALLBACK_URL, the model to fall back to")
    return problems


def _state_url_checks(url: str | None, path: str | None) -> list[str]:
    if path is None:
        return []
    if url is not None:
        return ["SIDECAR_STATE_URL and SIDECAR_STATE_URL_FILE are both set: set one, the URL or the file that holds it"]
    try:
        _read_state_url(path)
    except _Invalid as exc:
        return [f"SIDECAR_STATE_URL_FILE={path!r} is not valid: {exc}"]
    return []


def _read_state_url(path: str) -> str:
    """The URL in a file (a Secret's key, a trailing newline allowed); its content is never shown."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(64 << 10)
    except (OSError, UnicodeDecodeError) as exc:
        raise _Invalid(f"expected a readable file holding the store's URL: {exc}") from None
    try:
        return parse_state_url(text)
    except ValueError as exc:
        raise _Invalid(f"the file does not hold a store URL: {exc}") from None


def _performance_checks(values: dict[str, Any]) -> list[str]:
    task = values["task"]
    problems: list[str] = []
    if task != "classification":
        problems += [
            f"{variable(name)} applies to SIDECAR_TASK=classification only, not {task}"
            for name in ("positive_label", "classes")
            if values[name] is not None
        ]
    else:
        try:
            check_classes(values["classes"], values["positive_label"])
        except ValueError as exc:
            problems.append(f"SIDECAR_POSITIVE_LABEL/SIDECAR_CLASSES: {exc}")
    known = METRICS[task]
    problems += [
        f"SIDECAR_BASELINE_{metric.upper()} names no {task} metric; expected one of "
        + ", ".join(f"SIDECAR_BASELINE_{m.upper()}" for m in known)
        for metric, _ in values["baseline"]
        if metric not in known
    ]
    return problems
