from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

import pytest

from sidecar.config import Settings, variable
from sidecar.exceptions import ConfigError

BASE = {"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:8080"}


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.upstream_url == "http://127.0.0.1:8080"
    assert (settings.listen_host, settings.listen_port) == ("0.0.0.0", 8000)
    assert (settings.admin_host, settings.admin_port) == ("0.0.0.0", 9100)
    assert settings.model_name == "model"
    assert settings.admin_token is None
    assert settings.log_level == "info"


def test_values_are_parsed_and_normalised() -> None:
    settings = Settings.from_env(
        {
            "SIDECAR_UPSTREAM_URL": " https://model.internal:8443/ ",
            "SIDECAR_LISTEN_PORT": "0",
            "SIDECAR_UPSTREAM_TIMEOUT_SECONDS": "2.5",
            "SIDECAR_LOG_LEVEL": "DEBUG",
            "SIDECAR_MODEL_NAME": "fraud-v2",
            "SIDECAR_UPSTREAM_HEALTH_PATH": "/v2/health/ready",
            "SIDECAR_ADMIN_TOKEN": "s3cret",
        }
    )
    assert settings.upstream_url == "https://model.internal:8443"
    assert settings.listen_port == 0
    assert settings.upstream_timeout_seconds == 2.5
    assert settings.log_level == "debug"
    assert settings.model_name == "fraud-v2"
    assert settings.admin_token == "s3cret"


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(BASE)
    with pytest.raises(AttributeError):
        settings.listen_port = 1  # type: ignore[misc]


def test_empty_values_count_as_unset() -> None:
    assert Settings.from_env({**BASE, "SIDECAR_LISTEN_PORT": ""}).listen_port == 8000


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("SIDECAR_UPSTREAM_URL", "ftp://model", "http:// or https:// URL"),
        ("SIDECAR_UPSTREAM_URL", "http://", "http:// or https:// URL"),
        ("SIDECAR_UPSTREAM_URL", "http://model:99999", "port is from 1 to 65535"),
        ("SIDECAR_UPSTREAM_URL", "http://model?x=1", "without query string"),
        ("SIDECAR_LISTEN_PORT", "abc", "integer from 0 to 65535"),
        ("SIDECAR_LISTEN_PORT", "65536", "integer from 0 to 65535"),
        ("SIDECAR_ADMIN_PORT", "-1", "integer from 0 to 65535"),
        ("SIDECAR_UPSTREAM_TIMEOUT_SECONDS", "0", "number greater than 0"),
        ("SIDECAR_UPSTREAM_TIMEOUT_SECONDS", "nan", "number greater than 0"),
        ("SIDECAR_UPSTREAM_CONNECT_TIMEOUT_SECONDS", "soon", "number greater than 0"),
        ("SIDECAR_UPSTREAM_MAX_CONNECTIONS", "0", "integer from 1 to 100000"),
        ("SIDECAR_UPSTREAM_HEALTH_PATH", "health", "path starting with '/'"),
        ("SIDECAR_READY_CACHE_SECONDS", "-1", "number at least 0"),
        ("SIDECAR_SHUTDOWN_TIMEOUT_SECONDS", "inf", "number at least 0"),
        ("SIDECAR_MODEL_NAME", "my model", "letters, digits"),
        ("SIDECAR_LOG_LEVEL", "verbose", "one of debug, info, warning, error"),
        ("SIDECAR_TASK", "clustering", "one of classification, regression, ranking"),
        ("SIDECAR_RETRAIN_INTERVAL", "weekly", "duration from 60s"),
        ("SIDECAR_RETRAIN_INTERVAL", "10s", "duration from 60s"),
        ("SIDECAR_RETRAIN_MAX_DROP", "0", "number greater than 0"),
        ("SIDECAR_RETRAIN_ON_DRIFT", "maybe", "true or false"),
        ("SIDECAR_RETRAIN_WEBHOOK_URL", "ci.example/hook", "http:// or https:// URL"),
        ("SIDECAR_MODEL_TRAINED_AT", "2026-11-01T00:00:00", "no time zone"),
        ("SIDECAR_MODEL_TRAINED_AT", "yesterday", "RFC 3339"),
        ("SIDECAR_BASELINE_ACCURACY", "high", "number at least 0"),
        ("SIDECAR_PERF_MIN_LABELS", "0", "integer from 1"),
    ],
)
def test_bad_values_name_variable_value_and_allowed(variable: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, variable: value})
    (problem,) = info.value.problems
    assert problem.startswith(f"{variable}={value!r} is not valid: ")
    assert allowed in problem


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SIDECAR_LISTEN_PORT": "x", "SIDECAR_LOG_LEVEL": "loud", "SIDECAR_ADMIN_PORT": "1e9"})
    problems = info.value.problems
    assert len(problems) == 4
    assert problems[0] == "SIDECAR_UPSTREAM_URL is required but not set"
    assert {p.split("=")[0] for p in problems[1:]} == {
        "SIDECAR_LISTEN_PORT",
        "SIDECAR_LOG_LEVEL",
        "SIDECAR_ADMIN_PORT",
    }


def test_secrets_are_masked_in_errors_and_descriptions() -> None:
    settings = Settings.from_env({**BASE, "SIDECAR_ADMIN_TOKEN": "hunter2"})
    assert settings.describe()["SIDECAR_ADMIN_TOKEN"] == "***"
    assert "hunter2" not in repr(settings.describe())


def test_unknown_variables_are_listed_not_fatal() -> None:
    env = {**BASE, "SIDECAR_LISTEN_PROT": "8001", "SIDECAR_SERVICE_HOST": "10.0.0.1", "OTHER": "x"}
    assert Settings.from_env(env).listen_port == 8000
    assert Settings.unknown_variables(env) == ["SIDECAR_LISTEN_PROT", "SIDECAR_SERVICE_HOST"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )


def test_check_config_prints_effective_configuration_with_secrets_masked() -> None:
    result = _cli("check-config", env={**BASE, "SIDECAR_ADMIN_TOKEN": "hunter2", "SIDECAR_LISTN_PORT": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "SIDECAR_UPSTREAM_URL=http://127.0.0.1:8080" in lines
    assert "SIDECAR_ADMIN_TOKEN=***" in lines
    assert "SIDECAR_LISTEN_PORT=8000" in lines
    assert "hunter2" not in result.stdout + result.stderr
    assert "SIDECAR_LISTN_PORT is not a known setting" in result.stderr


def test_invalid_configuration_exits_2_with_one_line_per_problem() -> None:
    for command in ("check-config", "serve"):
        result = _cli(command, env={"SIDECAR_LISTEN_PORT": "http", "SIDECAR_ADMIN_TOKEN": " "})
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "ml-sidecar: invalid configuration:",
            "  SIDECAR_UPSTREAM_URL is required but not set",
            "  SIDECAR_LISTEN_PORT='http' is not valid: expected an integer from 0 to 65535",
        ]


def test_retraining_and_baseline_settings_parse() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "SIDECAR_RETRAIN_INTERVAL": "7d",
            "SIDECAR_BASELINE_ACCURACY": "0.91",
            "SIDECAR_BASELINE_AUC_ROC": "0.95",
            "SIDECAR_RETRAIN_ON_DRIFT": "off",
            "SIDECAR_MODEL_TRAINED_AT": "2026-11-01T00:00:00Z",
        }
    )
    assert settings.retrain_interval == 7 * 86_400
    assert settings.baseline == (("accuracy", 0.91), ("auc_roc", 0.95))
    assert settings.retrain_on_drift is False
    assert settings.model_trained_at == 1_793_491_200.0  # 2026-11-01T00:00:00Z
    assert settings.describe()["SIDECAR_BASELINE_AUC_ROC"] == "0.95"
    assert Settings.unknown_variables({**BASE, "SIDECAR_BASELINE_ACCURACY": "1"}) == []


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SIDECAR_BASELINE_MAE": "1.5"}, "SIDECAR_BASELINE_MAE names no classification metric"),
        ({"SIDECAR_TASK": "regression", "SIDECAR_POSITIVE_LABEL": "1"}, "SIDECAR_POSITIVE_LABEL applies to"),
        ({"SIDECAR_CLASSES": "a,b", "SIDECAR_POSITIVE_LABEL": "c"}, "positive_label 'c' is not one of the classes"),
        ({"SIDECAR_CLASSES": "a,a"}, "two or more distinct values"),
    ],
)
def test_performance_settings_that_do_not_fit_together(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, **env})
    assert any(problem in line for line in info.value.problems), info.value.problems


CHOICES = ("log_level", "protocol", "sampling", "reference_on_error", "pii_mode", "task")


@pytest.mark.parametrize("name", CHOICES)
def test_choices_are_literal_types_and_the_parser_allows_exactly_their_values(name: str) -> None:
    hint = get_type_hints(Settings)[name]
    assert get_origin(hint) is Literal
    allowed = get_args(hint)
    var = variable(name)
    # stratified sampling needs its strata; every other choice stands alone.
    base = {**BASE, "SIDECAR_STRATIFY_BY": "header:x-segment"}
    for value in allowed:
        assert getattr(Settings.from_env({**base, var: value.upper()}), name) == value
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**base, var: "bogus"})
    assert info.value.problems == [f"{var}='bogus' is not valid: expected one of {', '.join(allowed)}"]


# Every setting but one away from its default, so that each is written and read back.
RICH = {
    "SIDECAR_UPSTREAM_URL": " https://model.internal:8443/ ",
    "SIDECAR_LISTEN_HOST": "127.0.0.1",
    "SIDECAR_MONITORING_PLANE": "inline",
    "SIDECAR_LISTEN_PORT": "8001",
    "SIDECAR_ADMIN_HOST": "::1",
    "SIDECAR_ADMIN_PORT": "9101",
    "SIDECAR_MODEL_NAME": "fraud-v2",
    "SIDECAR_UPSTREAM_TIMEOUT_SECONDS": "2.5",
    "SIDECAR_UPSTREAM_CONNECT_TIMEOUT_SECONDS": "0.1",
    "SIDECAR_UPSTREAM_MAX_CONNECTIONS": "64",
    "SIDECAR_UPSTREAM_HEALTH_PATH": "/v2/health/ready",
    "SIDECAR_READY_CACHE_SECONDS": "0",
    "SIDECAR_SHUTDOWN_TIMEOUT_SECONDS": "12",
    "SIDECAR_FLUSH_TIMEOUT_SECONDS": "1e-3",
    "SIDECAR_ADMIN_TOKEN": "hunter2",
    "SIDECAR_LOG_LEVEL": "WARNING",
    "SIDECAR_PROTOCOL": "json",
    "SIDECAR_FEATURE_NAMES": " age, income ,country",
    "SIDECAR_FEATURES_POINTER": "/inputs",
    "SIDECAR_PREDICTIONS_POINTER": "/outputs/0/data",
    "SIDECAR_SCORES_POINTER": "/a~1b/m~0n",
    "SIDECAR_MODEL_VERSION": "2026.11",
    "SIDECAR_MODEL_VERSION_HEADER": "X-Model-Rev",
    "SIDECAR_CAPTURE_MAX_BYTES": "2048",
    "SIDECAR_CAPTURE_QUEUE_SIZE": "100",
    "SIDECAR_CAPTURE_QUEUE_MAX_BYTES": "16777216",
    "SIDECAR_CAPTURE_IN_FLIGHT_MAX_BYTES": "8388608",
    "SIDECAR_SAMPLING": "Stratified",
    "SIDECAR_SAMPLE_RATE": "0.1",
    "SIDECAR_SAMPLING_KEY": "header:X-User-Id",
    "SIDECAR_STRATIFY_BY": "feature:country",
    "SIDECAR_STRATUM_MIN_PER_WINDOW": "5",
    "SIDECAR_STRATUM_WINDOW_SECONDS": "30",
    "SIDECAR_STRATA_MAX": "20",
    "SIDECAR_IMPORTANCE_KEEP_ALL_BELOW": "0.3",
    "SIDECAR_IMPORTANCE_EXPONENT": "2",
    "SIDECAR_TRIGGER_HOLD_SECONDS": "60",
    "SIDECAR_TRIGGER_LATENCY_SECONDS": "1.5",
    "SIDECAR_TRIGGER_ERROR_COUNT": "3",
    "SIDECAR_TRIGGER_ERROR_WINDOW_SECONDS": "5",
    "SIDECAR_REFERENCE_PATH": "/etc/ml-sidecar/reference.json",
    "SIDECAR_REFERENCE_WARMUP": "500",
    "SIDECAR_REFERENCE_ON_ERROR": "warn",
    "SIDECAR_DRIFT_BINS": "20",
    "SIDECAR_DRIFT_WINDOW_SECONDS": "7200",
    "SIDECAR_DRIFT_SLICE_SECONDS": "120",
    "SIDECAR_DRIFT_MIN_SAMPLES": "50",
    "SIDECAR_DRIFT_VERDICT": "psi",
    "SIDECAR_DRIFT_ALPHA": "0.01",
    "SIDECAR_DRIFT_WASSERSTEIN_THRESHOLD": "0.2",
    "SIDECAR_DRIFT_JENSENSHANNON_THRESHOLD": "0.15",
    "SIDECAR_EVAL_INTERVAL_SECONDS": "0.5",
    "SIDECAR_QUALITY_RULES": "/etc/ml-sidecar/quality.yaml",
    "SIDECAR_QUALITY_RANGE_TOLERANCE": "0.05",
    "SIDECAR_EXPECTED_RECORDS_PER_SECOND": "12.5",
    "SIDECAR_LOG_SINK": "STDOUT, file:/var/log/p.jsonl,https://logs.internal/ingest",
    "SIDECAR_LOG_FILE_MAX_BYTES": "1000",
    "SIDECAR_LOG_FILE_BACKUPS": "2",
    "SIDECAR_LOG_QUEUE_SIZE": "50",
    "SIDECAR_LOG_QUEUE_MAX_BYTES": "4194304",
    "SIDECAR_LOG_HTTP_TIMEOUT_SECONDS": "2",
    "SIDECAR_PII_FIELDS": "email, phone,email",
    "SIDECAR_PII_MODE": "drop",
    "SIDECAR_PII_SALT": "a-long-random-secret-value",
    "SIDECAR_STATE_DIR": "/var/lib/ml-sidecar",
    "SIDECAR_STATE_URL": "postgresql://sidecar:pg-pass@db.internal:5432/monitoring?sslmode=require",
    "SIDECAR_LABEL_TTL_SECONDS": "604800",
    "SIDECAR_STORE_MAX_ROWS": "5000",
    "SIDECAR_STORE_BUFFER_MAX_BYTES": "4194304",
    "SIDECAR_STORE_SEGMENTS": "country,device",
    "SIDECAR_LABELS_MAX_BYTES": "4096",
    "SIDECAR_MAX_FEATURES": "150",
    "SIDECAR_METRICS_MAX_SERIES": "5000",
    "SIDECAR_MAX_HEADER_BYTES": "32768",
    "SIDECAR_MAX_HEADERS": "50",
    "SIDECAR_HEADER_TIMEOUT_SECONDS": "5",
    "SIDECAR_MAX_CONNECTIONS": "256",
    "SIDECAR_ADMIN_MAX_CONNECTIONS": "32",
    "SIDECAR_UPSTREAM_POOL_TIMEOUT_SECONDS": "2.5",
    "SIDECAR_SEND_TIMEOUT_SECONDS": "45",
    "SIDECAR_TASK": "classification",
    "SIDECAR_POSITIVE_LABEL": "fraud",
    "SIDECAR_CLASSES": "legit, fraud",
    "SIDECAR_RANKING_K": "5",
    "SIDECAR_PERF_MIN_LABELS": "10",
    "SIDECAR_PERF_WINDOW_SECONDS": "3600",
    "SIDECAR_PERF_MAX_ROWS": "2000",
    "SIDECAR_MODEL_TRAINED_AT": "2026-11-01T02:00:00.25+02:00",
    "SIDECAR_BASELINE_ACCURACY": "0.91",
    "SIDECAR_BASELINE_AUC_ROC": "0.95",
    "SIDECAR_RETRAIN_INTERVAL": "7d",
    "SIDECAR_RETRAIN_MAX_DROP": "0.05",
    "SIDECAR_RETRAIN_ON_DRIFT": "off",
    "SIDECAR_RETRAIN_MIN_NEW_LABELS": "1000",
    "SIDECAR_RETRAIN_COOLDOWN_SECONDS": "600",
    "SIDECAR_RETRAIN_WEBHOOK_URL": "https://ci.example/hooks/retrain?token=x",
    "SIDECAR_ALERT_RULES": "/etc/ml-sidecar/alerts.yaml",
    "SIDECAR_ALERT_BASELINE_WINDOW": "12h",
    "SIDECAR_ALERT_RATE_WINDOW_SECONDS": "60",
    "SIDECAR_ALERT_MIN_REQUESTS": "5",
    "SIDECAR_ALERTMANAGER_URL": "http://alertmanager:9093",
    "SIDECAR_ALERT_WEBHOOK_URL": "https://hooks.example/ml",
    "SIDECAR_ALERT_RESEND_SECONDS": "10",
    "SIDECAR_RUNBOOK_BASE_URL": "https://docs.example.com/runbooks/",
    "SIDECAR_FALLBACK_URL": "http://fallback:8080",
    "SIDECAR_AUTO_FALLBACK": "yes",
    "SIDECAR_EXPERIMENT_PATH": "/etc/ml-sidecar/experiment.yaml",
    "SIDECAR_EXPERIMENT_INTERVAL_SECONDS": "30",
    "SIDECAR_SHADOW_CONCURRENCY": "4",
    "SIDECAR_SHADOW_TIMEOUT_SECONDS": "2.5",
    "SIDECAR_SHADOW_QUEUE_SIZE": "200",
    "SIDECAR_SHADOW_QUEUE_MAX_BYTES": "4194304",
    "SIDECAR_SHADOW_MAX_CPU": "0.9",
}
SECRETS = {"SIDECAR_ADMIN_TOKEN": "hunter2", "SIDECAR_PII_SALT": "a-long-random-secret-value"}
# Shown with only its password masked.
MASKED = {"SIDECAR_STATE_URL": "postgresql://sidecar:***@db.internal:5432/monitoring?sslmode=require"}


def _read_back(lines: list[str]) -> dict[str, str]:
    """check-config's lines as an environment, the masked secrets put back as an operator would."""
    env = dict(line.split("=", 1) for line in lines)
    assert {var for var, value in env.items() if value == "***"} == set(SECRETS)
    assert {var: env[var] for var in MASKED} == MASKED
    return {**env, **SECRETS, "SIDECAR_STATE_URL": RICH["SIDECAR_STATE_URL"]}


def test_check_config_prints_values_that_read_back_as_the_same_settings() -> None:
    settings = Settings.from_env(RICH)
    # All but the task: SIDECAR_CLASSES and SIDECAR_POSITIVE_LABEL apply to the default task alone; and the
    # store's URL file, which excludes the URL (test_state_url_from_a_file).
    assert [f.name for f in dataclasses.fields(Settings) if getattr(settings, f.name) == f.default] == [
        "state_url_file",
        "task",
    ]
    result = _cli("check-config", env=RICH)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert Settings.from_env(_read_back(lines)) == settings
    # As the parsers read them, not as Python shows them.
    for line in (
        "SIDECAR_UPSTREAM_URL=https://model.internal:8443",
        "SIDECAR_LOG_SINK=stdout,file:/var/log/p.jsonl,https://logs.internal/ingest",
        "SIDECAR_FEATURE_NAMES=age,income,country",
        "SIDECAR_PII_FIELDS=email,phone",
        "SIDECAR_RETRAIN_ON_DRIFT=false",
        "SIDECAR_AUTO_FALLBACK=true",
        "SIDECAR_SHUTDOWN_TIMEOUT_SECONDS=12",
        "SIDECAR_FLUSH_TIMEOUT_SECONDS=0.001",
        "SIDECAR_UPSTREAM_CONNECT_TIMEOUT_SECONDS=0.1",
        "SIDECAR_RETRAIN_INTERVAL=604800",
        "SIDECAR_ALERT_BASELINE_WINDOW=43200",
        "SIDECAR_MODEL_TRAINED_AT=2026-11-01T00:00:00.250000Z",
        "SIDECAR_BASELINE_AUC_ROC=0.95",
        "SIDECAR_SAMPLING=stratified",
        "SIDECAR_ADMIN_TOKEN=***",
        "SIDECAR_PII_SALT=***",
    ):
        assert line in lines
    assert not [line for line in lines if re.search(r"[()']|=(None|True|False)$|\.0$", line)], lines
    assert "pg-pass" not in result.stdout + result.stderr


def test_state_url_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://sidecar:pg-pass@db:5432/monitoring\n")
    settings = Settings.from_env({**BASE, "SIDECAR_STATE_URL_FILE": str(secret)})
    assert settings.state_url is None
    assert settings.state_url_in_use() == "postgresql://sidecar:pg-pass@db:5432/monitoring"
    assert Settings.from_env(BASE).state_url_in_use() is None
    assert "pg-pass" not in repr(settings.describe())


def test_state_url_problems_name_the_variable_and_never_show_the_password(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("mysql://sidecar:pg-pass@db/monitoring")
    cases = {
        "SIDECAR_STATE_URL": ({"SIDECAR_STATE_URL": "postgresql://sidecar:pg-pass@db"}, "no database name"),
        "SIDECAR_STATE_URL_FILE": ({"SIDECAR_STATE_URL_FILE": str(bad)}, "the scheme must be postgresql://"),
        "missing file": ({"SIDECAR_STATE_URL_FILE": str(tmp_path / "absent")}, "expected a readable file"),
        "both": (
            {"SIDECAR_STATE_URL": "postgresql://db/m", "SIDECAR_STATE_URL_FILE": str(bad)},
            "SIDECAR_STATE_URL and SIDECAR_STATE_URL_FILE are both set",
        ),
    }
    for name, (env, expected) in cases.items():
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE, **env})
        text = str(caught.value)
        assert expected in text, name
        assert "pg-pass" not in text, name
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, "SIDECAR_STATE_URL": "postgresql://sidecar:pg-pass@db:port/m"})
    assert "SIDECAR_STATE_URL='postgresql://sidecar:***@db:port/m' is not valid" in str(caught.value)


def test_check_config_of_the_defaults_reads_back_with_unset_values_empty() -> None:
    settings = Settings.from_env(BASE)
    described = settings.describe()
    assert described["SIDECAR_ADMIN_TOKEN"] == ""
    assert described["SIDECAR_FEATURE_NAMES"] == ""
    assert described["SIDECAR_RUNBOOK_BASE_URL"] == ""
    assert described["SIDECAR_LOG_SINK"] == "stdout"
    assert described["SIDECAR_RETRAIN_ON_DRIFT"] == "true"
    assert described["SIDECAR_UPSTREAM_TIMEOUT_SECONDS"] == "30"
    assert Settings.from_env(described) == settings


def test_a_close_unknown_variable_gets_a_hint() -> None:
    assert Settings.closest_variable("SIDECAR_SAMPLE_RAT") == "SIDECAR_SAMPLE_RATE"
    assert Settings.closest_variable("SIDECAR_LISTEN_PROT") == "SIDECAR_LISTEN_PORT"
    assert Settings.closest_variable("SIDECAR_ALERT_RULE") == "SIDECAR_ALERT_RULES"
    # Kubernetes' variables for a Service named "sidecar" are nobody's typo.
    for var in ("SIDECAR_SERVICE_HOST", "SIDECAR_SERVICE_PORT", "SIDECAR_PORT", "SIDECAR_PORT_8000_TCP_ADDR"):
        assert Settings.closest_variable(var) is None


def test_check_config_warns_of_unknown_variables_with_did_you_mean() -> None:
    result = _cli("check-config", env={**BASE, "SIDECAR_SAMPLE_RAT": "0.1", "SIDECAR_SERVICE_HOST": "10.0.0.1"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "ml-sidecar: warning: SIDECAR_SAMPLE_RAT is not a known setting and is ignored; "
        "did you mean SIDECAR_SAMPLE_RATE?",
        "ml-sidecar: warning: SIDECAR_SERVICE_HOST is not a known setting and is ignored",
    ]


def test_runbook_base_url_is_optional() -> None:
    assert Settings.from_env(BASE).runbook_base_url is None
    base = "https://docs.example.com/runbooks/"
    assert Settings.from_env({**BASE, "SIDECAR_RUNBOOK_BASE_URL": base}).runbook_base_url == base
