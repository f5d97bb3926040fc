"""Integration tests against real Prometheus and Alertmanager processes (see ``stack.py``)."""
