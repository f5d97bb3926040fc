"""The README and docs/ are part of the contract: they list every setting, and name only what exists."""

from __future__ import annotations

import dataclasses
import importlib
import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from sidecar.config import PREFIX, Settings

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
# The Markdown a reader of the repository gets: the README and everything in docs/.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A path into the repository, where one starts: not inside a URL or after "ml-" (/var/lib/ml-sidecar).
PATH = re.compile(r"(?<![\w./-])(?:sidecar|benchmarks|deploy|tests|docs|demo)/[\w./-]*")
# A dotted module name, not the tail of another name (the CloudEvents type ml-sidecar.prediction).
MODULE = re.compile(r"(?<![\w.-])sidecar(?:\.[A-Za-z_]\w*)+")
# SIDECAR_X, a glob such as SIDECAR_*_POINTER, or a placeholder such as SIDECAR_BASELINE_<METRIC>.
SETTING = re.compile(r"SIDECAR_[A-Z0-9_*]*(?:<[A-Z]+>)?")
LINK = re.compile(r"\]\(([^)\s]+)\)")


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


def _names(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """``(document, match)`` for every match of ``pattern`` in the README and docs/."""
    return [(path.name, m.group(0)) for path in DOCUMENTS for m in pattern.finditer(path.read_text())]


def test_there_is_an_architecture_document() -> None:
    assert ROOT / "docs" / "architecture.md" in DOCUMENTS


def test_every_path_named_exists() -> None:
    named = _names(PATH)
    assert any(path.startswith("sidecar/") for _, path in named)
    # A sentence may end right after a path.
    missing = [(doc, path) for doc, path in named if not (ROOT / path.rstrip(".,")).exists()]
    assert not missing, missing


def test_every_module_named_exists() -> None:
    named = _names(MODULE)
    assert named
    missing = [(doc, name) for doc, name in named if not _resolves(name)]
    assert not missing, missing


def _resolves(dotted: str) -> bool:
    """True if ``dotted`` is a module, or a module's attribute (``sidecar.drift.evaluate``)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_every_setting_named_is_real() -> None:
    fields = dataclasses.fields(Settings)
    known = {PREFIX + f.name.upper() for f in fields}
    families = {PREFIX + f.name.upper() + "_" for f in fields if f.metadata["field"].family}

    def real(name: str) -> bool:
        if "<" in name:  # SIDECAR_<NAME> for any setting, or one family's SIDECAR_BASELINE_<METRIC>
            return name[: name.index("<")] in {PREFIX, *families}
        if "*" in name:  # SIDECAR_* for all of them, or a glob that must match at least one
            return name == PREFIX + "*" or any(fnmatchcase(setting, name) for setting in known)
        if name.endswith("_"):  # the bare prefix ("-e SIDECAR_..."), or a family's
            return name in {PREFIX, *families}
        return name in known or any(name.startswith(family) for family in families)

    named = _names(SETTING)
    assert named
    unknown = [(doc, name) for doc, name in named if not real(name)]
    assert not unknown, unknown


def test_the_layout_lists_every_package_and_module() -> None:
    section = README.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    listed = [line.split()[0] for line in block.splitlines() if line.strip()]
    package = ROOT / "sidecar"
    present = {f"sidecar/{d.name}/" for d in package.iterdir() if (d / "__init__.py").is_file()}
    present |= {f"sidecar/{f.name}" for f in package.glob("*.py") if f.name != "__init__.py"}
    assert len(listed) == len(set(listed)), "a line is repeated"
    assert set(listed) == present, (sorted(set(listed) - present), sorted(present - set(listed)))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_reach_a_file_and_heading(document: Path) -> None:
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.is_file(), (document.name, target)
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
            assert anchor in {_slug(heading) for heading in headings}, (document.name, target)


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation other than - and _ removed, spaces as hyphens.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
