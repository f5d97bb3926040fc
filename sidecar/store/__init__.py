"""The prediction store: captured predictions kept until their delayed labels arrive.

Ground truth comes hours to weeks after the prediction. The store keeps what
a join needs and joins labels posted later by request id and row, in one of
two databases behind one interface (:class:`~.backend.Backend`):

- **SQLite** (``SIDECAR_STATE_URL`` unset): ``SIDECAR_STATE_DIR/predictions.db``
  in WAL mode, one file per replica, nothing to run. A label must reach the
  replica that served its request.
- **PostgreSQL** (``SIDECAR_STATE_URL=postgresql://...``): one database shared
  by every replica, so a label posted to any replica joins, and the fleet's
  figures are computed once, by the leader.

The pieces, by concept:

- :mod:`.values`: what goes in and comes out (:class:`LabelItem`,
  :class:`Outcome`, :class:`Labelled`, :class:`Coverage`, :class:`Estimate`,
  :class:`StoreCounts`);
- :mod:`.experiment`: an A/B experiment's business outcomes, and the sums of a
  metric per arm its analysis reads (:class:`~.experiment.UnitSums`);
- :mod:`.shadow`: a shadow experiment's challenger predictions, and their
  pairs with control's (:class:`~.shadow.ShadowPairs`);
- :mod:`.backend`: what the store asks of a database, and the two ways a
  database says no (unreachable: retry; refused: count as failed);
- :mod:`.sqlite` and :mod:`.postgres`: each database's schema and every
  statement, blocking; :mod:`.schema`, PostgreSQL's schema and migrations;
  :mod:`.codec`, the conversions they share;
- :mod:`.buffer`: the bounded buffer the capture worker fills;
- :mod:`.front`: :class:`PredictionStore`, what the rest of the sidecar
  calls, on the event loop; :mod:`.writer`, its one writer thread, which
  writes, joins and queries; :mod:`.health`, when a failing database is tried
  again; :mod:`.leader`, which PostgreSQL replica leads.

Usage::

    store = PredictionStore(state_dir, url=None,  # or "postgresql://sidecar:...@db:5432/monitoring"
                            model="iris", leader_interval=15.0, segment_features=("country", "device"),
                            ttl_seconds=30 * 86400, max_rows=1_000_000)
    await store.start()
    monitor.subscribe(store.add)
    outcomes = await store.attach_labels([LabelItem("req-1", None, "setosa", None)])
    if store.is_leader and await store.label_marker(since, "iris") != last_marker:
        joined = await store.labelled(since=now - 86400, model="iris")
    joined = await store.attach_outcomes("ranker-v2", [OutcomeItem("conversion", 1.0, None, None, "u-17")],
                                         arms=("control", "treatment"))
    start = await store.experiment_started("ranker-v2", time.time())   # the first call's time, ever after
    store.add_shadow("ranker-v3-shadow", challenger_records)          # keyed and dated as control's
    pairs = await store.shadow_pairs("ranker-v3-shadow", control="control", since=start)
    sums = await store.outcome_sums("ranker-v2", "conversion", ("control", "treatment"), since=start,
                                    period_seconds=86400.0, calendar=False)
    await store.close(deadline)

The rules
---------

**What is stored.** Per prediction row: request id, row, prediction time,
model, version, variant, prediction, scores, weight (1/p), the confidence if
it is in [0, 1], the segments, a small JSON object of the
``segment_features`` only (missing ones as null), and, when an experiment
runs, the request's assignment unit and its ``segment_by`` value (the
record's ``unit`` and ``segment``). The rest of the feature
dict is never stored, which keeps PII and size down. Then the label, the
label's own timestamp if given, when it arrived, and its number in the order
labels arrived. A prediction is keyed by (request id, row). If a request id
comes again (a client reusing ids), the first prediction is kept and the
repeat counted as a ``conflict``; with PostgreSQL, whichever replica wrote it.

**Writes never touch the request path.** :meth:`PredictionStore.add` encodes
the rows (the feature dict is left behind at once) and appends them to a
buffer bounded at ``buffer_rows`` and at ``buffer_bytes``
(``SIDECAR_STORE_BUFFER_MAX_BYTES``); an exchange that does not fit is
dropped whole and counted (``buffer_full``). The writer thread writes every
``flush_seconds`` (0.1 s) or as soon as ``batch_rows`` (1,000) wait, one
transaction per batch: multi-row ``INSERT``s into SQLite, binary ``COPY`` into
a temporary table then ``INSERT ... ON CONFLICT DO NOTHING`` into PostgreSQL.

**Labels.** :meth:`PredictionStore.attach_labels` takes a batch of
(request id, row, label, timestamp) and answers per item:

- ``joined``: stored, with the prediction it joined (for performance metrics
  and label delay);
- ``duplicate``: that prediction already had a label. **The first label
  wins**; a later one changes nothing, so a retried POST is harmless and no
  label is counted twice. With PostgreSQL this holds across replicas: the
  same label posted to two replicas at once is ``joined`` on one and
  ``duplicate`` on the other (the batch locks its rows in key order, then
  labels those still unlabelled). A label cannot be corrected through the store;
- ``unmatched``: no such prediction: never captured (sampled out), evicted,
  or not yet captured. Unmatched labels are not kept for later; the caller
  may post again;
- ``invalid``: unusable, with a reason (bad types, a null or non-JSON label).
  **row None** means row 0 of a single-row request. If the request had
  several rows, it is ``invalid`` ("row required"): guessing a row would
  score the wrong prediction.

Buffered predictions are written before labels are joined, so a label never
misses a prediction that was captured but not yet written. A label's
``labelled_at`` is the store's clock with SQLite, and the database's clock
with PostgreSQL, one clock for the fleet.

**Experiments' outcomes.** :meth:`PredictionStore.attach_outcomes` takes an
experiment's business outcomes, keyed by request id (and row) or by unit,
in one transaction, and answers per item as for labels: ``joined`` to a
stored prediction of one of the experiment's arms (the arm as ``variant``;
an outcome by unit joins the arm the unit's first prediction was in),
``duplicate`` (**the first outcome of an (experiment, metric, request id and
row | unit) wins**, across replicas with PostgreSQL), ``unmatched`` (not
stored) or ``invalid``. A database that refuses the batch or cannot be
reached raises :class:`StoreError` with nothing of it stored. An outcome
lives as long as the prediction it joined (an outcome by unit, while the
unit has any), so eviction bounds outcomes as it bounds predictions.
:meth:`~PredictionStore.outcome_sums`, :meth:`~PredictionStore.labelled_exposures`
and :meth:`~PredictionStore.experiment_units` give the analysis its per-arm
figures over a window of prediction time (:mod:`.experiment`), which starts
when the experiment first ran: :meth:`~PredictionStore.experiment_started`
records that time once, for every replica sharing the store and for every
restart, and reads it back.

**A shadow challenger's predictions.** :meth:`PredictionStore.add_shadow`
buffers the challenger's rows of a shadow experiment (their own buffer, with
the same bounds, written after the predictions), keyed by control's request
id and row, the first of a key kept, and dated by control's prediction time:
eviction takes them with the predictions of their time.
:meth:`~PredictionStore.shadow_pairs` pairs them with control's predictions
and labels when the analysis reads them (:mod:`.shadow`).

**Windows are over prediction time.** :meth:`~PredictionStore.labelled`,
:meth:`~PredictionStore.coverage`, :meth:`~PredictionStore.label_marker` and
:meth:`~PredictionStore.estimated` select predictions made at or after
``since``, as model performance is conventionally dated by when the model
predicted, so one window measures one period of traffic and one model
version. With PostgreSQL they read the whole fleet's rows. The recent part of
any window is under-labelled while its labels are still coming;
:meth:`~PredictionStore.coverage` says how complete a window is, and
performance computed before labels have had time to arrive is biased towards
the cases that are labelled quickly. :meth:`~PredictionStore.label_marker`
is a cheap pair (labelled rows in the window, the sum of their label numbers)
that changes whenever a labelled row enters or leaves the window, so
performance need be recomputed only then; :meth:`~PredictionStore.estimated`
is the accuracy estimated from confidence over every stored prediction.

**Leadership.** With SQLite, the replica is alone and always leads
(:attr:`~PredictionStore.is_leader`). With PostgreSQL, the leader is the
replica holding a session-level advisory lock, keyed by the model
(:func:`~.leader.leader_key`), on a connection of its own. Each replica tries
for it every ``leader_interval`` (``SIDECAR_EVAL_INTERVAL_SECONDS``); the
leader checks that connection instead and drops leadership as soon as it
fails. When the leader dies, its session ends and another replica leads
within one interval.

**Eviction, oldest first by prediction time.** Predictions older than
``ttl_seconds`` (``SIDECAR_LABEL_TTL_SECONDS``) are deleted, then the oldest
beyond ``max_rows`` (``SIDECAR_STORE_MAX_ROWS``), labelled or not. Both are
counted by reason (``ttl``, ``max_rows``), as the rows this replica deleted.
A label for an evicted prediction is ``unmatched``. SQLite evicts with every
batch written, and at least once a minute when no traffic comes. With
PostgreSQL only the leader evicts (of its model's rows), once a minute, in
batches of 10,000 rows, each its own transaction, so no lock is held long;
``max_rows`` is checked against an exact count per round (at a million rows,
about 0.07 s once autovacuum has run, a few tenths before). Writes do not evict.

**Rows.** ``counts().rows`` is exact with SQLite. With PostgreSQL it is the
table's count at the last eviction round (the leader's) or at connection,
plus the rows this replica wrote since: the fleet's count on the leader.

**Faults.** A SQLite failure (disk full, corrupt file, locked) is counted in
``failed``, logged once per outage, and never raised into ``add``. A
PostgreSQL that is down, restarting or slower than the statement timeout
(5 s) is *unreachable*, not failing: batches go back to the buffer and are
written when it is back (once the buffer is full, new exchanges are dropped
and counted ``buffer_full``); the store reconnects with backoff (0.5 s
doubling to 30 s, reset by a success), logs once per outage and once on
recovery, and :attr:`~PredictionStore.available` is False meanwhile. A label
batch is then refused with a :class:`StoreError` within seconds, nothing of
it stored. A database error that is not about reaching it (a row it cannot
hold) counts the batch as failed; anything else is a bug, logged with its
traceback.

**Start, restarts and shutdown.** The file or the database survives a
restart, and labels posted afterwards still join.
:meth:`~PredictionStore.close` writes the buffer until its deadline and
counts what it could not write (``shutdown``). With SQLite's
``synchronous=NORMAL``, a power loss (not a crash) may lose the last batches.
A file that cannot be opened, is not a database, or has another schema stops
start-up with a :class:`StoreError` naming ``SIDECAR_STATE_DIR`` and the path.
With PostgreSQL, the schema is created or migrated at start by one replica at
a time (an advisory lock; :mod:`.schema`). A malformed URL, a login the
server refuses, a missing database or a newer schema stop start-up with a
:class:`StoreError` naming ``SIDECAR_STATE_URL`` with the password masked: a
typo must not run silently for days. A server that cannot be reached does
not: the model must serve, so the store starts, warns, buffers and retries.
"""

from __future__ import annotations

from sidecar.store.front import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_ROWS,
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_LEADER_INTERVAL,
    DEFAULT_MAX_ROWS,
    DEFAULT_TTL_SECONDS,
    FILENAME,
    PredictionStore,
)
from sidecar.store.shadow import ShadowPairs
from sidecar.store.values import (
    OUTCOMES,
    Coverage,
    Estimate,
    LabelItem,
    Labelled,
    Outcome,
    OutcomeKind,
    StoreCounts,
    StoreError,
)

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_BUFFER_ROWS",
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_LEADER_INTERVAL",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TTL_SECONDS",
    "FILENAME",
    "OUTCOMES",
    "Coverage",
    "Estimate",
    "LabelItem",
    "Labelled",
    "Outcome",
    "OutcomeKind",
    "PredictionStore",
    "ShadowPairs",
    "StoreCounts",
    "StoreError",
]
