from __future__ import annotations

import subprocess
import sys

import pytest

from sidecar.config import Settings
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
