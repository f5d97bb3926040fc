"""What ships: the wheel installed into a clean venv without extras, as the Dockerfile installs it.

The dev venv holds every test and lint tool, so a module that imports a
package only a dev tool brings in (yarl, through aiohttp, once did) passes
every other test and crash-loops in the image. These tests run the installed
``ml-sidecar`` from a venv that holds the runtime dependencies and nothing
else, from a directory outside the checkout, so the source tree cannot stand
in for the package.

``make test`` builds that venv (``.venv-runtime``) from a fresh wheel and
names it in ``SIDECAR_RUNTIME_VENV``; run alone, the tests build their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http import raw_request, scrape
from tests.servers import Upstream, serve_process

ROOT = Path(__file__).resolve().parents[1]
# What only the dev extra brings; none of it may be needed at run time.
DEV_ONLY = (
    "aiohttp",
    "yarl",
    "multidict",
    "pytest",
    "hypothesis",
    "mypy",
    "ruff",
    "sklearn",
    "pyarrow",
    "statsmodels",
    "pandas",
)

IMPORT_ALL = """
import importlib, pkgutil, sys
import sidecar
assert sidecar.__file__.startswith(sys.prefix), sidecar.__file__
# __main__ runs the command line when imported; the console script covers it.
names = [m.name for m in pkgutil.walk_packages(sidecar.__path__, "sidecar.") if m.name != "sidecar.__main__"]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def _build(venv: Path) -> None:
    wheels = venv.parent / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)],
        check=True,
        timeout=600,
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (wheel,) = wheels.glob("ml_sidecar-*.whl")
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The runtime venv: ``SIDECAR_RUNTIME_VENV`` when ``make test`` built it, else a new one."""
    given = os.environ.get("SIDECAR_RUNTIME_VENV")
    if given:
        yield Path(given).resolve()
        return
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    _build(venv)
    yield venv


def _run(runtime: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -I: neither the current directory nor PYTHONPATH may put the checkout on sys.path.
    return subprocess.run(
        [str(runtime / "bin" / "python"), "-I", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_runtime_venv_holds_no_dev_dependency(runtime: Path, tmp_path: Path) -> None:
    probe = "import importlib.util, sys; print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    result = _run(runtime, "-c", probe, *DEV_ONLY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
    check = _run(runtime, "-m", "pip", "check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_module_of_the_installed_package_imports(runtime: Path, tmp_path: Path) -> None:
    result = _run(runtime, "-c", IMPORT_ALL, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Every module, not a handful: the package has well over a hundred.
    assert int(result.stdout) > 100


def test_the_installed_command_answers_help_and_check_config(runtime: Path, tmp_path: Path) -> None:
    command = str(runtime / "bin" / "ml-sidecar")
    shown = subprocess.run([command, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "check-config" in shown.stdout and "profile" in shown.stdout
    env = {**os.environ, "SIDECAR_UPSTREAM_URL": "http://127.0.0.1:8080"}
    checked = subprocess.run(
        [command, "check-config"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )
    assert checked.returncode == 0, checked.stderr
    assert "SIDECAR_UPSTREAM_URL=http://127.0.0.1:8080" in checked.stdout.splitlines()


@pytest.mark.anyio
async def test_the_installed_sidecar_proxies_a_request_and_serves_metrics(runtime: Path, upstream: Upstream) -> None:
    command = (str(runtime / "bin" / "ml-sidecar"),)
    env = {"SIDECAR_LOG_SINK": "none", "PYTHONSAFEPATH": "1"}
    async with serve_process(upstream.url, env, command=command) as (_, proxy_port, admin_port):
        response = await raw_request(proxy_port, "POST", "/echo", [("content-type", "application/json")], b'{"a": 1}')
        assert response.status == 200
        assert response.body == b'{"a": 1}'
        metrics = await scrape(admin_port)
    assert metrics['mlsidecar_requests_total{code="200",model="model",variant="primary"}'] == 1
    assert "/echo" in [s.path for s in upstream.seen]
