"""The layers hold at run time: importing a lower layer loads nothing of the layers above it.

The dependency rules of docs/architecture.md say that statistics know no web and that checking a
configuration needs no sink or HTTP code. An import anywhere can break that
silently, so each case imports modules in a fresh interpreter and looks at
``sys.modules``, as the house style asks.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

# The web and the request path: no statistics module and not the settings may load these.
WEB = ("httptools", "uvicorn", "starlette", "sidecar.upstream", "sidecar.serving", "sidecar.admin")
# The settings load only sidecar.syntax for the packages they validate, not the packages themselves.
HEAVY = (
    "numpy",
    "scipy",
    "sidecar.sinks",
    "sidecar.protocols",
    "sidecar.sampling",
    "sidecar.performance",
    "sidecar.capture",
)
LOWER_LAYERS = ("sidecar.config", "sidecar.drift", "sidecar.quality", "sidecar.performance")


def _loaded(*modules: str) -> set[str]:
    """The modules that importing ``modules`` adds to a fresh interpreter's ``sys.modules``."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        f"import {', '.join(modules)}\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def _within(loaded: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(name for name in loaded if any(name == p or name.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("module", LOWER_LAYERS)
def test_a_lower_layer_loads_no_web(module: str) -> None:
    loaded = _loaded(module)
    assert module in loaded
    assert _within(loaded, WEB) == []


def test_the_lower_layers_together_load_no_web() -> None:
    loaded = _loaded(*LOWER_LAYERS)
    assert set(LOWER_LAYERS) <= loaded
    assert _within(loaded, WEB) == []


# The settings, and the command line that checks them (`ml-sidecar check-config`).
@pytest.mark.parametrize("module", ["sidecar.config", "sidecar.cli"])
def test_the_settings_load_no_sink_http_or_numpy_code(module: str) -> None:
    loaded = _loaded(module)
    assert "sidecar.syntax.sinks" in loaded
    assert _within(loaded, WEB + HEAVY) == []
    # Nothing outside the standard library at all: checking a configuration needs no dependency.
    third_party = {name.partition(".")[0] for name in loaded} - set(sys.stdlib_module_names) - {"sidecar"}
    assert third_party == set()


def test_the_check_sees_what_a_heavy_import_loads() -> None:
    # The sinks' package is what the settings used to pull in; it brings the HTTP client with it.
    loaded = _loaded("sidecar.sinks")
    assert {"sidecar.sinks.http", "sidecar.upstream.client", "httptools"} <= loaded


@pytest.mark.parametrize(
    ("package", "syntax", "names"),
    [
        ("sidecar.protocols", "sidecar.syntax.protocols", ("PROTOCOLS",)),
        ("sidecar.protocols", "sidecar.syntax.jsonpointer", ("parse_pointer",)),
        ("sidecar.sampling", "sidecar.syntax.sampling", ("STRATEGIES", "parse_source")),
        ("sidecar.capture.privacy", "sidecar.syntax.privacy", ("PII_MODES", "check_pii", "parse_fields")),
        ("sidecar.performance", "sidecar.syntax.performance", ("TASKS", "METRICS")),
        ("sidecar.sinks", "sidecar.syntax.sinks", ("parse_sink_spec",)),
    ],
)
def test_the_packages_use_the_syntax_names_not_copies(package: str, syntax: str, names: tuple[str, ...]) -> None:
    # One list of each: what the settings accept is what the packages act on.
    for name in names:
        assert getattr(importlib.import_module(package), name) is getattr(importlib.import_module(syntax), name)


def test_the_serving_process_loads_no_scipy(tmp_path: Path) -> None:
    """In process mode the proxy's process builds the monitoring components only to check their files.

    scipy.stats alone costs a process about 70 MiB (benchmarks/memory): the drift tests import it
    when they first compute a p-value, which the serving process never does.
    """
    from tests.admin.scenario import write_reference

    reference = write_reference(tmp_path / "reference.json")
    code = (
        "import sys\n"
        "from sidecar.config import Settings\n"
        "from sidecar.server import Sidecar\n"
        "settings = Settings.from_env({'SIDECAR_UPSTREAM_URL': 'http://127.0.0.1:9', "
        f"'SIDECAR_REFERENCE_PATH': {str(reference)!r}, 'SIDECAR_STATE_DIR': {str(tmp_path / 'state')!r}}})\n"
        "sidecar = Sidecar(settings)\n"
        "assert sidecar.monitor is not None  # the default plane: a monitoring process\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "sidecar.drift.ks" in loaded  # the check did build the drift monitors...
    assert _within(loaded, ("scipy",)) == []  # ...without their distribution functions
