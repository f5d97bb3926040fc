"""The ``make demo`` stack: a real model server, ml-sidecar in front of it, and synthetic traffic.

Run it with ``python -m demo``; see ``demo/__main__.py`` for its settings.
"""
