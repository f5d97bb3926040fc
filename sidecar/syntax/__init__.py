"""The syntax of the settings: choices and value formats, in the standard library alone.

``sidecar.config`` validates every ``SIDECAR_*`` variable at start-up, so it
needs the allowed protocols, sampling strategies, PII modes, tasks and metric
names, and the grammars of JSON Pointers, ``header:``/``feature:`` sources and
log-sink lists. The packages those describe are heavy (numpy, the HTTP client,
the sinks' queues), so the light half of each lives here, one module per
package it describes, and that package imports its names from here:

- :mod:`.protocols`: ``SIDECAR_PROTOCOL``;
- :mod:`.jsonpointer`: RFC 6901 pointers (``SIDECAR_*_POINTER``);
- :mod:`.sampling`: ``SIDECAR_SAMPLING``, ``SIDECAR_SAMPLING_KEY``, ``SIDECAR_STRATIFY_BY``;
- :mod:`.privacy`: ``SIDECAR_PII_FIELDS``, ``SIDECAR_PII_MODE``, ``SIDECAR_PII_SALT``;
- :mod:`.performance`: ``SIDECAR_TASK``, ``SIDECAR_CLASSES``, ``SIDECAR_POSITIVE_LABEL``
  and the ``SIDECAR_BASELINE_<METRIC>`` names;
- :mod:`.sinks`: ``SIDECAR_LOG_SINK``;
- :mod:`.store`: ``SIDECAR_STATE_URL`` (and how to show it without its password);
- :mod:`.items`: the fields of the admin API's POST bodies (labels, outcomes), which
  the endpoints' parsers share.

This ``__init__`` stays empty, as uvicorn keeps its subpackages', so importing
one module loads no other; ``tests/test_layering.py`` checks that importing
``sidecar.config`` loads no sink, HTTP or numpy code.
"""
