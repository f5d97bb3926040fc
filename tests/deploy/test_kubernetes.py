"""deploy/kubernetes/: the kustomization, every manifest validated, and the pieces held to each other.

The built-in kinds go through ``kubernetes-validate --strict`` (an unknown field is an error)
for every Kubernetes version the example supports, from the schemas that package ships. The
Prometheus Operator's kinds go through the schemas of :mod:`tests.deploy.operator`. The
PrometheusRule must be what ``tools.prometheusrule`` generates from ``deploy/prometheus``, and
``promtool check rules`` must accept its groups.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sidecar.config import Settings, variable
from tests.deploy.operator import SCHEMAS
from tests.tools import run_tool
from tools import prometheusrule

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
EXAMPLES = {"secret.yaml"}  # shipped for reading and copying, never applied by `kubectl apply -k`

# The sleep action of preStop is on by default from 1.30; the schemas kubernetes-validate ships end at 1.37.
VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))
OPERATOR_KINDS = set(SCHEMAS)

# benchmarks/memory, the PSS of the sidecar container's processes summed (default process mode,
# capture rate 1, wrk at 32 connections): at rest, 204 MiB at most; under load with small bodies,
# 261 MiB steady; with 64 KiB bodies that fill every payload buffer's byte bound, 560 MiB at peak.
MEASURED_AT_REST_BYTES = 204 * 2**20
MEASURED_STEADY_BYTES = 261 * 2**20
MEASURED_PEAK_BYTES = 560 * 2**20

Resource = dict[str, Any]


def _load(path: Path) -> list[Resource]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _manifests() -> list[Path]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return [KUBERNETES / name for name in kustomization["resources"]]


def _resources() -> list[Resource]:
    return [resource for path in _manifests() for resource in _load(path)]


def _one(kind: str, name: str | None = None) -> Resource:
    (found,) = [r for r in _resources() if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)]
    return found


def _sidecar() -> Resource:
    containers: list[Resource] = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "ml-sidecar"]
    return container


def _env(container: Resource) -> dict[str, str]:
    return {variable["name"]: variable.get("value", "") for variable in container["env"]}


def _validate(*paths: Path, strict: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kubernetes_validate", *[f"--kubernetes-version={v}" for v in VERSIONS]]
    command += ["--strict"] if strict else []
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, timeout=120, check=False)


def test_the_kustomization_lists_every_manifest_but_the_examples() -> None:
    listed = {path.name for path in _manifests()}
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - EXAMPLES
    kinds = sorted(resource["kind"] for resource in _resources())
    assert kinds == sorted(
        ["Deployment", "Service", "Service", "PodMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget"]
    )


def test_builtin_kinds_pass_kubernetes_validate_strict_for_every_supported_version() -> None:
    paths = [
        path for path in [*_manifests(), KUBERNETES / "secret.yaml"] if _load(path)[0]["kind"] not in OPERATOR_KINDS
    ]
    result = _validate(*paths)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"^INFO .* passed for resource (\S+) against version (\S+)$", result.stdout, re.MULTILINE)
    resources = {f"{r['kind'].lower()}/{r['metadata']['name']}" for path in paths for r in _load(path)}
    assert set(passed) == {(resource, version) for resource in resources for version in VERSIONS}


def test_strict_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    """The check above would pass anything if strict mode were not strict: a typo must fail it."""
    deployment = copy.deepcopy(_one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][1]["resource"] = {"limits": {"memory": "1Gi"}}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(deployment))
    assert _validate(path, strict=False).returncode == 0
    result = _validate(path)
    assert result.returncode != 0 and "'resource' was unexpected" in result.stdout, result.stdout


@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
def test_operator_kinds_match_their_schemas(kind: str) -> None:
    resource = _one(kind)
    jsonschema.validate(resource, SCHEMAS[kind])
    misspelt = copy.deepcopy(resource)
    misspelt["spec"]["selectr"] = {}
    with pytest.raises(jsonschema.ValidationError, match="selectr"):
        jsonschema.validate(misspelt, SCHEMAS[kind])


def test_the_prometheusrule_is_generated_from_deploy_prometheus() -> None:
    assert (KUBERNETES / "prometheusrule.yaml").read_text() == prometheusrule.render(), (
        "deploy/kubernetes/prometheusrule.yaml is stale: run `python -m tools.prometheusrule`"
    )
    rule = _one("PrometheusRule")
    expected = [group for path in prometheusrule.SOURCES for group in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == expected
    assert [group["name"] for group in expected] == ["mlsidecar_fleet_drift", "mlsidecar_alerts"]


def test_promtool_accepts_the_prometheusrule_groups(tmp_path: Path) -> None:
    groups = _one("PrometheusRule")["spec"]["groups"]
    path = tmp_path / "groups.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = run_tool("promtool", "check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in groups)
    assert f"SUCCESS: {rules} rules found" in result.stdout + result.stderr


def test_the_podmonitor_scrapes_every_pods_admin_port() -> None:
    pod = _one("Deployment")["spec"]["template"]
    (endpoint,) = _one("PodMonitor")["spec"]["podMetricsEndpoints"]
    assert _one("PodMonitor")["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {port["name"]: port["containerPort"] for port in _sidecar()["ports"]}
    assert ports[endpoint["port"]] == 9100 and endpoint["path"] == "/metrics"
    # The recording rules evaluate every minute: at least one scrape a minute.
    assert _seconds(endpoint["interval"]) <= 60 and _seconds(endpoint["scrapeTimeout"]) < _seconds(endpoint["interval"])


def test_the_services_reach_the_proxy_and_every_replicas_admin_port() -> None:
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    proxy, admin = _one("Service", "credit-risk"), _one("Service", "credit-risk-admin")
    for service in (proxy, admin):
        assert service["spec"]["selector"].items() <= labels.items()
    assert [port["targetPort"] for port in proxy["spec"]["ports"]] == ["http"]
    assert [port["targetPort"] for port in admin["spec"]["ports"]] == ["admin"]
    # Headless: a label is posted to every replica, since only the one that served a request can join it.
    assert admin["spec"]["clusterIP"] == "None" and admin["spec"]["publishNotReadyAddresses"] is True


def test_the_networkpolicy_keeps_the_admin_port_to_the_namespace_and_prometheus() -> None:
    policy = _one("NetworkPolicy")["spec"]
    assert (
        policy["podSelector"]["matchLabels"].items()
        <= _one("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    assert policy["policyTypes"] == ["Ingress"]
    allowed = {port["port"]: rule.get("from") for rule in policy["ingress"] for port in rule["ports"]}
    assert set(allowed) == {"http", "admin"}  # the model server's port is reached over 127.0.0.1 only
    assert allowed["http"] is None  # clients, from anywhere
    assert allowed["admin"] == [
        {"podSelector": {}},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        },
    ]


def test_the_disruption_budget_keeps_a_replica_serving() -> None:
    deployment, budget = _one("Deployment"), _one("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert budget["maxUnavailable"] < deployment["spec"]["replicas"]


def test_the_admin_token_comes_from_the_example_secret_with_a_placeholder() -> None:
    (secret,) = _load(KUBERNETES / "secret.yaml")
    (token,) = [variable for variable in _sidecar()["env"] if variable["name"] == "SIDECAR_ADMIN_TOKEN"]
    reference = token["valueFrom"]["secretKeyRef"]
    assert (secret["metadata"]["name"], list(secret["stringData"])) == (reference["name"], [reference["key"]])
    assert secret["stringData"][reference["key"]] == "REPLACE-WITH-A-RANDOM-TOKEN"
    assert not reference.get("optional", False)  # no Secret, no start: never a sidecar without a token


def test_the_memory_request_and_limit_fit_what_was_measured() -> None:
    sidecar = _sidecar()
    env = _env(sidecar)
    # The peak was measured with one sink and the default byte bounds, all full: the manifest's must
    # be those, or the measurement no longer describes it (raise them with a new measurement).
    assert len(env["SIDECAR_LOG_SINK"].split(",")) == 1
    for name in ("capture_in_flight_max_bytes", "capture_queue_max_bytes", "log_queue_max_bytes"):
        assert int(env[variable(name)]) == _default(name), name
    assert int(env["SIDECAR_STORE_BUFFER_MAX_BYTES"]) == _default("store_buffer_max_bytes")
    request = _bytes(sidecar["resources"]["requests"]["memory"])
    limit = _bytes(sidecar["resources"]["limits"]["memory"])
    # The request holds the usual load, the limit the worst measured peak, each with room to spare.
    assert request >= 1.2 * MEASURED_STEADY_BYTES, request / MEASURED_STEADY_BYTES
    assert limit >= 1.3 * MEASURED_PEAK_BYTES, limit / MEASURED_PEAK_BYTES
    assert MEASURED_AT_REST_BYTES < MEASURED_STEADY_BYTES < request < MEASURED_PEAK_BYTES < limit


def _default(name: str) -> int:
    value = getattr(Settings.from_env({"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:8080"}), name)
    assert isinstance(value, int)
    return value


def test_the_prediction_log_is_a_rotated_file_within_its_volume() -> None:
    sidecar, pod = _sidecar(), _one("Deployment")["spec"]["template"]["spec"]
    env = _env(sidecar)
    kind, _, path = env["SIDECAR_LOG_SINK"].partition(":")
    assert kind == "file"  # not stdout: one container log line per row would flood the cluster's logging
    (mount,) = [m for m in sidecar["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    # The kubelet evicts a pod whose emptyDir outgrows its limit: every rotated file must fit.
    files = int(env["SIDECAR_LOG_FILE_BACKUPS"]) + 1
    assert files * int(env["SIDECAR_LOG_FILE_MAX_BYTES"]) < _bytes(volume["emptyDir"]["sizeLimit"])


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMG]i)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit]


def _seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([sm])", duration).groups()  # type: ignore[union-attr]
    return int(number) * (60 if unit == "m" else 1)
