# Everyone runs the project the same way: these targets, and CI calls `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_SECONDS ?= 0

.PHONY: help venv demo test check lint types pytest bench apt-test apt-bench clean

help:
	@echo "make demo   - demo model server + ml-sidecar + traffic (Ctrl-C to stop, or DEMO_SECONDS=N)"
	@echo "make test   - install what the tests need, then lint, type-check and run the test suite"
	@echo "make bench  - install wrk and nginx, then run benchmarks/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	DEMO_SECONDS=$(DEMO_SECONDS) $(PY) -m demo

# Debian packages the tests drive for real: prometheus and promtool, alertmanager and amtool.
apt-test:
	@{ command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null; } || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	  --no-install-recommends prometheus prometheus-alertmanager; }

apt-bench:
	@{ command -v wrk >/dev/null && command -v nginx >/dev/null; } || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends wrk nginx-light; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy

check: lint types

pytest: $(STAMP) apt-test
	$(PY) -m pytest

test: check pytest

bench: $(STAMP) apt-bench
	$(PY) -m benchmarks.proxy_overhead

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
