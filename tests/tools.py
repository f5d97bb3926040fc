"""The Debian binaries the tests drive for real, found on PATH or failing with how to get them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["binary", "run_tool"]


def binary(name: str) -> str:
    """The path of ``name``; a failed test (not a skip) when it is missing, saying how to install it."""
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(
            f"{name} is not on PATH. `make test` installs it (Debian packages `prometheus` and "
            "`prometheus-alertmanager`).",
            pytrace=False,
        )
    return exe


def run_tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one of them to completion, output captured as text."""
    return subprocess.run([binary(name), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
