"""Generators for the files in ``deploy/`` that are built, not written by hand.

Each module writes one committed file, and a test in ``tests/deploy/`` regenerates it and
compares, so the file and its source never drift apart:

- ``python -m tools.dashboard`` writes ``deploy/grafana/ml-sidecar.json``;
- ``python -m tools.prometheusrule`` writes ``deploy/kubernetes/prometheusrule.yaml``.

They are development tools: nothing in ``sidecar`` imports them, and the package does not ship them.
"""
