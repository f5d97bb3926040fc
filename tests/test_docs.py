"""The README is part of the contract: it must list every setting the code reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sidecar.config import PREFIX, Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def _documented_name(field: dataclasses.Field[object]) -> str:
    # A family (SIDECAR_BASELINE_ACCURACY, ...) is documented once, with its key as a placeholder.
    return PREFIX + field.name.upper() + ("_<METRIC>" if field.metadata["field"].family else "")


def test_readme_documents_every_setting_with_its_default() -> None:
    for field in dataclasses.fields(Settings):
        var = _documented_name(field)
        rows = [line for line in README.splitlines() if line.startswith(f"| `{var}` |")]
        assert rows, f"{var} is missing from the README's configuration table"
        shown = rows[0].split("|")[2].strip().strip("`")
        assert shown == _as_documented(field.default), (var, shown)


def _as_documented(default: object) -> str:
    if default is dataclasses.MISSING:
        return "(required)"
    if default is None or default == ():
        return "(unset)"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ",".join(default)
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    known = {_documented_name(f) for f in dataclasses.fields(Settings)}
    documented = {line.split("`")[1] for line in README.splitlines() if line.startswith("| `SIDECAR_")}
    assert documented <= known, documented - known


def test_deploy_examples_use_only_known_settings() -> None:
    import yaml

    known = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    deploy = Path(__file__).parent.parent / "deploy" / "kubernetes" / "deployment.yaml"
    used = set()
    for document in yaml.safe_load_all(deploy.read_text()):
        for container in document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            used |= {env["name"] for env in container.get("env", []) if env["name"].startswith(PREFIX)}
    assert used, "the example sets no SIDECAR_* variable"
    assert used <= known, used - known
