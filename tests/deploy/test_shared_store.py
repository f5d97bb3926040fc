"""deploy/kubernetes/shared-store/: the Component that points every replica at one PostgreSQL store.

No kustomize binary here, so the test applies the Component's strategic-merge patch itself, the
way kustomize merges these lists (volumes, containers and env by ``name``, volume mounts by
``mountPath``), and validates the patched Deployment, the labels Service and the example Secret
with ``kubernetes-validate --strict`` for every supported version. Then it holds the pieces to
each other: the file the sidecar reads is the one the Secret's key is mounted at, and the URL in
the example parses as a store URL.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from sidecar.config import Settings
from tests.deploy.test_kubernetes import KUBERNETES, VERSIONS, Resource, _load, _one, _validate

COMPONENT = KUBERNETES / "shared-store"


def _kustomization() -> Resource:
    return _load(COMPONENT / "kustomization.yaml")[0]


def _merge_by(key: str, base: list[Resource], patch: list[Resource]) -> list[Resource]:
    merged = {item[key]: copy.deepcopy(item) for item in base}
    for item in patch:
        merged[item[key]] = _merge(merged.get(item[key], {}), item)
    return list(merged.values())


_LIST_KEYS = {"volumes": "name", "containers": "name", "env": "name", "volumeMounts": "mountPath"}


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if key in _LIST_KEYS and key in out:
                out[key] = _merge_by(_LIST_KEYS[key], out[key], value)
            else:
                out[key] = _merge(out.get(key), value)
        return out
    return copy.deepcopy(patch)


def _patched_deployment() -> Resource:
    (patch,) = _kustomization()["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": _one("Deployment")["metadata"]["name"]}
    patched: Resource = _merge(_one("Deployment"), _load(COMPONENT / patch["path"])[0])
    return patched


def _sidecar(deployment: Resource) -> Resource:
    containers: list[Resource] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "ml-sidecar"]
    return container


def test_the_component_lists_its_manifests_but_the_example() -> None:
    kustomization = _kustomization()
    assert kustomization["kind"] == "Component"
    used = set(kustomization["resources"]) | {patch["path"] for patch in kustomization["patches"]}
    assert used == {path.name for path in COMPONENT.glob("*.yaml")} - {"kustomization.yaml", "secret.yaml"}


def test_the_patched_deployment_and_the_component_pass_strict_validation(tmp_path: Path) -> None:
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text(yaml.safe_dump(_patched_deployment()))
    paths = [deployment, COMPONENT / "labels-service.yaml", COMPONENT / "secret.yaml"]
    result = _validate(*paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(paths) * len(VERSIONS)


def test_the_sidecar_reads_the_url_from_the_mounted_secret(tmp_path: Path) -> None:
    deployment = _patched_deployment()
    sidecar = _sidecar(deployment)
    env = {variable["name"]: variable for variable in sidecar["env"]}
    # Untouched by the patch: the base's settings stay, and the URL is never an env value.
    assert set(env) == {variable["name"] for variable in _sidecar(_one("Deployment"))["env"]} | {
        "SIDECAR_STATE_URL_FILE"
    }
    assert "SIDECAR_STATE_URL" not in env
    path = Path(env["SIDECAR_STATE_URL_FILE"]["value"])
    (mount,) = [m for m in sidecar["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    assert mount["readOnly"] is True
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    secret = _load(COMPONENT / "secret.yaml")[0]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    (item,) = volume["secret"]["items"]
    assert item["path"] == path.name and item["key"] in secret["stringData"]

    # The example's value, in a file as the kubelet writes it, is a URL the sidecar takes.
    file = tmp_path / path.name
    file.write_text(secret["stringData"][item["key"]])
    settings = Settings.from_env({"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:8080", "SIDECAR_STATE_URL_FILE": str(file)})
    assert settings.state_url_in_use() == secret["stringData"][item["key"]]
    assert "REPLACE-WITH-THE-PASSWORD" not in str(settings.describe())


def test_the_labels_service_load_balances_over_every_replicas_admin_port() -> None:
    service = _load(COMPONENT / "labels-service.yaml")[0]
    pods = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pods.items()
    assert "clusterIP" not in service["spec"]  # one virtual IP: each batch goes to one replica
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in _sidecar(_one("Deployment"))["ports"]}
