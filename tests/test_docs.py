"""The README is part of the contract: it must list every setting the code reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sidecar.config import PREFIX, Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_documents_every_setting_with_its_default() -> None:
    for field in dataclasses.fields(Settings):
        var = PREFIX + field.name.upper()
        rows = [line for line in README.splitlines() if line.startswith(f"| `{var}` |")]
        assert rows, f"{var} is missing from the README's configuration table"
        default = field.default
        if default is not None and default is not dataclasses.MISSING:
            shown = rows[0].split("|")[2].strip().strip("`")
            assert shown == f"{default:g}" if isinstance(default, float) else shown == str(default), (var, shown)


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    known = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    documented = {line.split("`")[1] for line in README.splitlines() if line.startswith("| `SIDECAR_")}
    assert documented <= known, documented - known
