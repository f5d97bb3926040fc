# Everyone runs the project the same way: these targets, and CI calls `make test`.
SHELL := /bin/bash
PYTHON ?= python3
# Three venvs, each for one question:
#   .venv          the dev venv: the package (editable) with every test and lint tool;
#   .venv-runtime  what ships: the wheel and its runtime dependencies, no extras;
#                  `make demo` runs here, and the tests run the installed command from it;
#   .venv-lower    the dev venv again at the lowest versions pyproject.toml allows.
VENV ?= .venv
RUNTIME_VENV ?= .venv-runtime
LOWER_VENV ?= .venv-lower
PY := $(VENV)/bin/python
RUNTIME_PY := $(RUNTIME_VENV)/bin/python
LOWER_PY := $(LOWER_VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed
LOWER_STAMP := $(LOWER_VENV)/.installed
LOWEST := tests/lowest-versions.txt
WHEELS := build/wheel
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_SECONDS ?= 0

.PHONY: help venv runtime demo test check lint types pytest pytest-lower bench apt-test apt-bench clean

help:
	@echo "make demo   - two versions of a demo model + ml-sidecar + traffic that drifts: drift, a quality violation and alerts within about a minute, and an A/B experiment that rolls out v2 (Ctrl-C to stop, or DEMO_SECONDS=N)"
	@echo "make test   - lint, type-check, run the suite (it also tests the built wheel), then the suite at the lowest versions"
	@echo "make bench  - install wrk and nginx, then run benchmarks/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The runtime dependencies once per pyproject.toml; the package itself from a
# fresh wheel every time, so the venv holds exactly what a user would install.
$(RUNTIME_STAMP): pyproject.toml
	rm -rf $(RUNTIME_VENV)
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_PY) -m pip install --quiet --upgrade pip
	$(RUNTIME_PY) -m pip install --quiet .
	touch $(RUNTIME_STAMP)

runtime: $(RUNTIME_STAMP)
	rm -rf $(WHEELS)
	$(RUNTIME_PY) -m pip wheel --quiet --no-deps --wheel-dir $(WHEELS) .
	$(RUNTIME_PY) -m pip install --quiet --force-reinstall --no-deps $(WHEELS)/ml_sidecar-*.whl

$(LOWER_STAMP): pyproject.toml $(LOWEST)
	rm -rf $(LOWER_VENV)
	$(PYTHON) -m venv $(LOWER_VENV)
	$(LOWER_PY) -m pip install --quiet --upgrade pip
	$(LOWER_PY) -m pip install --quiet -c $(LOWEST) -e '.[dev]'
	touch $(LOWER_STAMP)

demo: runtime
	DEMO_SECONDS=$(DEMO_SECONDS) $(RUNTIME_PY) -m demo

# Debian packages the tests drive for real: prometheus and promtool, alertmanager and amtool,
# chromium for the status page (Playwright drives it; it cannot download browsers here), and
# postgresql for the shared store (the tests run initdb and pg_ctl, which Debian keeps in
# /usr/lib/postgresql/<version>/bin, off the PATH).
apt-test:
	@{ command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null && \
	  command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	  --no-install-recommends prometheus prometheus-alertmanager chromium postgresql; }

apt-bench:
	@{ command -v wrk >/dev/null && command -v nginx >/dev/null; } || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends wrk nginx-light; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy

check: lint types

pytest: $(STAMP) runtime apt-test
	SIDECAR_RUNTIME_VENV=$(RUNTIME_VENV) $(PY) -m pytest

pytest-lower: $(LOWER_STAMP) runtime apt-test
	SIDECAR_RUNTIME_VENV=$(RUNTIME_VENV) $(LOWER_PY) -m pytest -q

test: check pytest pytest-lower

bench: $(STAMP) apt-bench
	$(PY) -m benchmarks.proxy_overhead

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) $(LOWER_VENV) build dist .mypy_cache .ruff_cache .pytest_cache
