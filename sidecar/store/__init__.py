"""The prediction store: captured predictions kept until their delayed labels arrive.

Ground truth comes hours to weeks after the prediction. The store keeps what
a join needs, in ``SIDECAR_STATE_DIR/predictions.db`` (SQLite, WAL mode), and
joins labels posted later by request id and row.

The pieces, by concept:

- :mod:`.values`: what goes in and comes out (:class:`LabelItem`,
  :class:`Outcome`, :class:`Labelled`, :class:`Coverage`, :class:`StoreCounts`);
- :mod:`.sqlite`: the file, its schema and every SQL statement; blocking;
- :mod:`.writer`: :class:`PredictionStore`, the bounded buffer the monitor
  worker fills and the one thread that writes, joins and queries.

Usage::

    store = PredictionStore(state_dir, segment_features=("country", "device"),
                            ttl_seconds=30 * 86400, max_rows=1_000_000)
    await store.start()
    monitor.subscribe(store.add)
    outcomes = await store.attach_labels([LabelItem("req-1", None, "setosa", None)])
    joined = await store.labelled(since=now - 86400)
    await store.close(deadline)

The rules
---------

**What is stored.** Per prediction row: request id, row, prediction time,
model, version, variant, prediction, scores, weight (1/p) and the segments, a
small JSON object of the ``segment_features`` only (missing ones as null).
The rest of the feature dict is never stored, which keeps PII and size down.
Then the label, the label's own timestamp if given, and when it arrived.
A prediction is keyed by (request id, row). If a request id comes again (a
client reusing ids), the first prediction is kept and the repeat counted as
a ``conflict``.

**Writes never touch the request path.** :meth:`PredictionStore.add` encodes
the rows (the feature dict is left behind at once) and appends them to a
buffer bounded at ``buffer_rows`` and at ``buffer_bytes``
(``SIDECAR_STORE_BUFFER_MAX_BYTES``); an exchange that does not fit is
dropped whole and counted (``buffer_full``). The writer thread writes every
``flush_seconds`` (0.1 s) or as soon as ``batch_rows`` (1,000) wait, one
transaction per batch. A SQLite failure (disk full, corrupt file, locked) is
counted in ``failed``, logged once per outage, and never raised into ``add``.

**Labels.** :meth:`PredictionStore.attach_labels` takes a batch of
(request id, row, label, timestamp) and answers per item:

- ``joined``: stored, with the prediction it joined (for performance metrics
  and label delay);
- ``duplicate``: that prediction already had a label. **The first label
  wins**; a later one changes nothing, so a retried POST is harmless and no
  label is counted twice. A label cannot be corrected through the store;
- ``unmatched``: no such prediction: never captured (sampled out), evicted,
  or not yet captured. Unmatched labels are not kept for later; the caller
  may post again;
- ``invalid``: unusable, with a reason (bad types, a null or non-JSON label).
  **row None** means row 0 of a single-row request. If the request had
  several rows, it is ``invalid`` ("row required"): guessing a row would
  score the wrong prediction.

Buffered predictions are written before labels are joined, so a label never
misses a prediction that was captured but not yet written.

**Windows are over prediction time.** :meth:`~PredictionStore.labelled` and
:meth:`~PredictionStore.coverage` select predictions made at or after
``since``, as model performance is conventionally dated by when the model
predicted, so one window measures one period of traffic and one model version.
The recent part of any window is under-labelled while its labels are still
coming; :meth:`~PredictionStore.coverage` says how complete a window is, and
performance computed before labels have had time to arrive is biased towards
the cases that are labelled quickly.

**Eviction, oldest first by prediction time.** Predictions older than
``ttl_seconds`` (``SIDECAR_LABEL_TTL_SECONDS``) are deleted, then the oldest
beyond ``max_rows`` (``SIDECAR_STORE_MAX_ROWS``), labelled or not. Both are
counted by reason (``ttl``, ``max_rows``). A label for an evicted prediction is
``unmatched``. Eviction runs with every batch written, and at least once a
minute when no traffic comes.

**Restarts and shutdown.** The file survives a restart, and labels posted
afterwards still join. :meth:`~PredictionStore.close` writes the buffer until
its deadline and counts what it could not write (``shutdown``). With
``synchronous=NORMAL``, a power loss (not a crash) may lose the last batches.
A file that cannot be opened, is not a database, or has another schema stops
start-up with a :class:`StoreError` naming ``SIDECAR_STATE_DIR`` and the path.

Moving to a server database
---------------------------

The interface is narrow on purpose: ``add`` / ``attach_labels`` /
``labelled`` / ``coverage`` / ``evict``, plus ``counts`` and ``close``, all in
terms of :mod:`.values`. A PostgreSQL store would keep the buffer and the
batching of :mod:`.writer` and replace :mod:`.sqlite`:

- predictions go in by ``COPY`` or a multi-row ``INSERT ... ON CONFLICT
  (request_id, row_index) DO NOTHING``;
- labels become one statement per batch, ``UPDATE predictions p SET ... FROM
  unnest(...) i WHERE (p.request_id, p.row_index) = (i.request_id, i.row_index)
  AND p.labelled_at IS NULL RETURNING ...``, which keeps the first label
  atomic however many replicas write; a second look tells a duplicate from an
  unmatched item;
- one database shared by every replica means a label may reach any replica.
  With SQLite each replica holds only the traffic it captured, so a label
  must reach the replica that served the request (or be sent to all, and the
  one that answers ``joined`` counts it);
- the TTL becomes a table partitioned by day on the prediction time, where
  eviction drops a partition instead of deleting rows, and ``max_rows`` a
  quota checked against planner estimates rather than a count.
"""

from __future__ import annotations

from sidecar.store.values import (
    OUTCOMES,
    Coverage,
    LabelItem,
    Labelled,
    Outcome,
    OutcomeKind,
    StoreCounts,
    StoreError,
)
from sidecar.store.writer import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_ROWS,
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_MAX_ROWS,
    DEFAULT_TTL_SECONDS,
    FILENAME,
    PredictionStore,
)

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_BUFFER_ROWS",
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TTL_SECONDS",
    "FILENAME",
    "OUTCOMES",
    "Coverage",
    "LabelItem",
    "Labelled",
    "Outcome",
    "OutcomeKind",
    "PredictionStore",
    "StoreCounts",
    "StoreError",
]
