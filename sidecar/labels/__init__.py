"""Delayed labels and the live performance they give, by verb.

- :mod:`.api`: parse and check the body of ``POST /api/v1/labels``;
- :mod:`.ingest`: validate, join and count the labels;
- :mod:`.window`: keep the labelled rows of the performance window;
- :mod:`.evaluate`: compute performance and run the retraining checks, each interval;
- :mod:`.snapshot`: what an evaluation publishes; :mod:`.views`: its JSON;
- :mod:`.metrics`: the Prometheus collector; :mod:`.retraining`: staleness and retraining triggers.
"""
