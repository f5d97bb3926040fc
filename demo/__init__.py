"""The ``make demo`` stack: two versions of a real model, ml-sidecar in front of them, and synthetic traffic.

Run it with ``python -m demo``; see ``demo/__main__.py`` for its settings.
"""
