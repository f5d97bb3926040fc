"""Benchmarks of ml-sidecar, run as modules: ``python -m benchmarks.proxy_overhead``."""
