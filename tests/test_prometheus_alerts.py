"""The alerting rules, their unit tests, the Alertmanager example and the runbooks in deploy/.

promtool and amtool are the real Debian binaries. Besides running them, this module checks
what they do not: every alert has a severity from P1 to P4, its annotations, a runbook in the
incident-response shape at the URL it names, and at least one promtool case in which it fires
and one in which it stays quiet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.alerting.rules import default_rules
from tests.tools import run_tool

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
RULES_DIR = DEPLOY / "prometheus"
ALERTING_RULES = RULES_DIR / "alerting_rules.yml"
ALERTING_TEST = RULES_DIR / "alerting_rules_test.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
RUNBOOKS = DEPLOY / "runbooks"
# Relative to the root of the docs, as the sidecar's built-in rules link them without SIDECAR_RUNBOOK_BASE_URL.
RUNBOOK_BASE = "deploy/runbooks/"

# The sidecar's built-in default alerts: the Prometheus rules carry the same names and severities.
BUILT_IN = {
    "serving_errors_high": "P1",
    "accuracy_drop": "P2",
    "data_quality_major": "P2",
    "experiment_revert": "P2",
    "feature_drift": "P3",
    "prediction_drift": "P3",
    "minor_feature_drift": "P4",
    "retraining_triggered": "P4",
}
SECTIONS = ("Detection", "Diagnosis", "Mitigation", "Escalation")
ROUTES = {"P1": "paging", "P2": "chat", "P3": "tickets", "P4": "tickets"}


def _tool(name: str, *args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return run_tool(name, *args, cwd=cwd)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _load(ALERTING_RULES)["groups"] for rule in group["rules"]]


# --- promtool and amtool -----------------------------------------------------------------------


def test_alerting_rules_pass_promtool_check_without_findings() -> None:
    result = _tool("promtool", "check", "rules", ALERTING_RULES.name)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(BUILT_IN)} rules found" in output, output
    assert "warning" not in output.lower(), output


def test_alerting_rules_unit_tests_pass() -> None:
    result = _tool("promtool", "test", "rules", ALERTING_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_passes_amtool_check() -> None:
    result = _tool("amtool", "check-config", str(ALERTMANAGER_CONFIG))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output, output


@pytest.mark.parametrize(("severity", "receiver"), sorted(ROUTES.items()))
def test_alertmanager_routes_each_severity(severity: str, receiver: str) -> None:
    result = _tool(
        "amtool",
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        "alertname=any",
        "model=credit",
        f"severity={severity}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_p1_inhibits_lower_severities_of_the_same_model() -> None:
    (rule,) = _load(ALERTMANAGER_CONFIG)["inhibit_rules"]
    assert rule["source_matchers"] == ['severity="P1"']
    assert rule["target_matchers"] == ['severity=~"P2|P3|P4"']
    assert rule["equal"] == ["model"]


def test_readme_prometheus_config_with_alerting_passes_promtool_check(tmp_path: Path) -> None:
    blocks = re.findall(r"^```yaml\n(.*?)^```", (RULES_DIR / "README.md").read_text(), flags=re.M | re.S)
    config = next(block for block in blocks if "alerting_rules.yml" in block and "alertmanagers" in block)
    (tmp_path / "prometheus.yml").write_text(config)
    for name in ("recording_rules.yml", "alerting_rules.yml"):
        shutil.copy(RULES_DIR / name, tmp_path)
    result = _tool("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output


# --- the rules' contract -----------------------------------------------------------------------


def test_alerts_are_the_built_in_alerts_with_their_severities() -> None:
    assert {rule["alert"]: rule["labels"]["severity"] for rule in _alerts()} == BUILT_IN


def test_every_alert_has_severity_annotations_and_an_existing_runbook() -> None:
    for rule in _alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("P1", "P2", "P3", "P4"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert all(annotations[key].strip() for key in annotations), name
        url = annotations["runbook_url"]
        assert url == f"{RUNBOOK_BASE}{name}.md", name
        assert (ROOT / url).is_file(), url


def test_alerts_link_the_runbooks_the_built_in_rules_link() -> None:
    built_in = {rule.name: rule.runbook for rule in default_rules()}
    assert {rule["alert"]: rule["annotations"]["runbook_url"] for rule in _alerts()} == built_in


def test_every_alert_keeps_the_model_label_for_inhibition() -> None:
    # Aggregations may drop labels; `equal: [model]` in the inhibition needs this one.
    for rule in _alerts():
        for aggregation in re.findall(r"\b(?:sum|max|min|avg|count)\s+(by|without)\s*\(([^)]*)\)", rule["expr"]):
            kind, labels = aggregation[0], {label.strip() for label in aggregation[1].split(",")}
            assert ("model" in labels) if kind == "by" else ("model" not in labels), rule["alert"]


def test_every_alert_has_a_runbook_with_the_four_sections() -> None:
    for rule in _alerts():
        name = rule["alert"]
        text = (RUNBOOKS / f"{name}.md").read_text()
        assert text.startswith(f"# {name} ({rule['labels']['severity']})\n"), name
        headings = re.findall(r"^## (.+)$", text, flags=re.M)
        assert headings == list(SECTIONS), (name, headings)
        for section in re.split(r"^## .+$", text, flags=re.M)[1:]:
            assert len(section.split()) >= 20, (name, section[:80])


def test_runbooks_index_every_alert_and_nothing_else() -> None:
    names = {rule["alert"] for rule in _alerts()}
    assert {path.stem for path in RUNBOOKS.glob("*.md")} == names | {"README"}
    index = (RUNBOOKS / "README.md").read_text()
    for name in names:
        assert f"[{name}.md]({name}.md)" in index, name


def test_runbook_promql_parses(tmp_path: Path) -> None:
    """Every ```promql block in the runbooks is one expression that Prometheus accepts."""
    rules = [
        {"record": f"runbook:{path.stem}:{i}", "expr": block}
        for path in sorted(RUNBOOKS.glob("*.md"))
        for i, block in enumerate(re.findall(r"^ *```promql\n(.*?)^ *```", path.read_text(), flags=re.M | re.S))
    ]
    assert len(rules) >= len(BUILT_IN)
    (tmp_path / "runbooks.yml").write_text(yaml.safe_dump({"groups": [{"name": "runbooks", "rules": rules}]}))
    result = _tool("promtool", "check", "rules", "runbooks.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- coverage of the promtool unit tests -------------------------------------------------------


def test_unit_tests_load_both_rule_files() -> None:
    assert _load(ALERTING_TEST)["rule_files"] == ["recording_rules.yml", "alerting_rules.yml"]


def test_every_alert_fires_in_one_case_and_stays_quiet_in_another() -> None:
    firing: dict[str, int] = defaultdict(int)
    quiet: dict[str, int] = defaultdict(int)
    for case in _load(ALERTING_TEST)["tests"]:
        for check in case.get("alert_rule_test") or []:
            expected = check.get("exp_alerts") or []
            if expected:
                firing[check["alertname"]] += 1
                # A firing case pins the severity and every annotation, so templates are tested too.
                for alert in expected:
                    assert alert["exp_labels"]["severity"] == BUILT_IN[check["alertname"]], case["name"]
                    assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}, case["name"]
            else:
                quiet[check["alertname"]] += 1
    for name in BUILT_IN:
        assert firing[name] >= 1, f"no promtool case in which {name} fires"
        assert quiet[name] >= 1, f"no promtool case in which {name} stays quiet"
    assert set(firing) | set(quiet) <= set(BUILT_IN), "a test names an alert that does not exist"
