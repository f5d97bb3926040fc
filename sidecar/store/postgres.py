"""The PostgreSQL backend of the prediction store: one connection to a database every replica shares.

Blocking, and owned by one thread, like :mod:`.sqlite`: the store's writer
thread holds one :class:`Database` (writes, labels, reads) and its leadership
thread another (the advisory lock and eviction, :mod:`.leader`). The schema
and its migrations are in :mod:`.schema`.

What makes it safe for several writers:

- **Predictions** go in by binary ``COPY`` into a temporary table, then
  ``INSERT ... SELECT ... ON CONFLICT (request_id, row_index) DO NOTHING``:
  the first prediction of a key wins, whichever replica wrote it. Measured
  against one multi-row ``INSERT ... SELECT FROM unnest(...)`` here (batches
  of 1,000, ``fsync`` off), it wrote about 2.5x the rows per second (150,000
  against 60,000) for a twentieth of the client's CPU, which is the sidecar's.
- **Labels**: one transaction per batch. It first locks the matching rows
  (``SELECT ... FOR UPDATE``, in key order, so two replicas' batches never
  deadlock on each other), which also reads whether each already has a
  label; then one ``UPDATE ... FROM unnest(...) WHERE labelled_at IS NULL``
  labels the rest, each by the ``ctid`` of the row version it locked. The
  same label posted to two replicas at once is ``joined`` on one and
  ``duplicate`` on the other. ``labelled_at`` is the database's clock
  (``now()``), one clock for the fleet; each label takes the next number of a
  sequence (``label_seq``), for :meth:`Database.label_marker`. A deadlock
  with the leader's eviction, which locks rows in another order, is retried.
- **Outcomes** (an experiment's, :mod:`.experiment`): one transaction per
  batch, one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` in key order, so
  the same outcome posted to two replicas at once is stored once (``joined``
  on one, ``duplicate`` on the other) and two batches never deadlock on each
  other; dated by the database's clock.
- **A shadow challenger's predictions** (:mod:`.shadow`): one
  ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` per batch, in
  key order, so the first of a key is kept across replicas.
- **Eviction** deletes in batches of :data:`EVICT_BATCH_ROWS`, each its own
  transaction, so no lock is held for long: predictions, then the outcomes
  and the challenger's predictions they took with them.

Every connection sets ``statement_timeout`` (:data:`STATEMENT_TIMEOUT_SECONDS`;
reads of the labelled window get :data:`READ_TIMEOUT_SECONDS`), so a slow
database cannot hold the writer thread for ever, and server-side TCP
keepalives, so a replica whose node vanished loses its locks in about
:data:`KEEPALIVE_SECONDS` rather than the operating system's two hours.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sidecar.records import PredictionRecord
from sidecar.store.backend import Refused, Unavailable, Written
from sidecar.store.codec import confidence, dumps, labelled
from sidecar.store.experiment import (
    LabelledExposures,
    OutcomeRow,
    UnitSums,
    collect_exposures,
    collect_sums,
    collect_units,
    encode_outcome,
    match_request,
    match_unit,
    period_parameters,
)
from sidecar.store.schema import migrate
from sidecar.store.shadow import ShadowPairs, collect_pairs
from sidecar.store.values import Coverage, Estimate, Labelled, Outcome, StoreError, choose_row, encode_item
from sidecar.syntax.store import mask_url

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "EVICT_BATCH_ROWS",
    "KEEPALIVE_SECONDS",
    "READ_TIMEOUT_SECONDS",
    "STATEMENT_TIMEOUT_SECONDS",
    "Database",
    "encode",
    "encode_shadow",
    "encoded_bytes",
    "shadow_bytes",
]

logger = logging.getLogger("sidecar.store")

T = TypeVar("T")
Role = Literal["writer", "leader"]

# libpq counts it per address tried; at least 2 s, as libpq advises.
CONNECT_TIMEOUT_SECONDS = 2
STATEMENT_TIMEOUT_SECONDS = 5.0
# Reading the labelled window back returns up to a million rows: more than a write's time, still bounded.
READ_TIMEOUT_SECONDS = 30.0
EVICT_BATCH_ROWS = 10_000
# Server and client TCP keepalives: idle 10 s, then 3 probes 5 s apart.
KEEPALIVE_SECONDS = 25
_KEEPALIVE = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3"}
# A transaction left open by a stalled replica would keep its row locks; the server ends such a session.
_IDLE_IN_TRANSACTION_SECONDS = 60
# Deadlocks with another replica's eviction (which locks rows in another order) are retried at once.
_ATTEMPTS = 3
# Row indexes are integers in the table: a larger one cannot match, and would fail the whole batch to bind.
_MAX_ROW = 2**31 - 1
# libpq's messages for a connection the server refused for good: the URL or the credentials are wrong,
# and retrying cannot help. Only English is recognised; another lc_messages makes them look transient.
_DEFINITE = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "connection is bad",
    "invalid connection option",
    "permission denied",
    "does not support SSL",
)
_SETUP = """
SELECT set_config('statement_timeout', %s, false),
       set_config('idle_in_transaction_session_timeout', %s, false),
       set_config('tcp_keepalives_idle', '10', false),
       set_config('tcp_keepalives_interval', '5', false),
       set_config('tcp_keepalives_count', '3', false)
"""
# The store's one join is a label batch's against the key index, and it must be a nested loop of index lookups:
# statistics lag a table written this fast, and with stale ones the planner hashed the whole table instead
# (0.1 s and more per batch of 1,000 at 800,000 rows, against 0.01 s). The writer's session allows no other.
_NESTED_LOOPS_ONLY = "SELECT set_config('enable_hashjoin', 'off', false), set_config('enable_mergejoin', 'off', false)"
# The writer's staging table: private to its session, emptied by every commit.
_INCOMING = """
CREATE TEMPORARY TABLE IF NOT EXISTS incoming (
    request_id text, row_index integer, ts double precision, model text, version text, variant text,
    prediction text, scores text, weight double precision, segments text, confidence double precision,
    unit text, segment text
) ON COMMIT DELETE ROWS
"""
_INSERT_COLUMNS = (
    "request_id, row_index, ts, model, version, variant, prediction, scores, weight, segments, confidence, unit,"
    " segment"
)
_COPY = f"COPY incoming ({_INSERT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = [
    "text", "int4", "float8", "text", "text", "text", "text", "text", "float8", "text", "float8", "text", "text",
]  # fmt: skip
_INSERT = (
    f"INSERT INTO predictions ({_INSERT_COLUMNS}) SELECT {_INSERT_COLUMNS} FROM incoming"
    " ON CONFLICT (request_id, row_index) DO NOTHING"
)
# A null row matches every row of the request, so the caller can tell a batch request apart.
# The rows are locked in key order, and each batch's label goes to the very row version locked, by its ctid.
_MATCH = """
SELECT i.n, p.row_index, p.labelled_at IS NOT NULL, p.ctid,
       p.request_id, p.row_index, p.ts, p.model, p.version, p.variant, p.prediction, p.scores, p.weight, p.segments
FROM unnest(%s::text[], %s::integer[]) WITH ORDINALITY AS i (request_id, row_index, n)
JOIN predictions AS p ON p.request_id = i.request_id AND (i.row_index IS NULL OR p.row_index = i.row_index)
ORDER BY p.request_id, p.row_index
FOR UPDATE OF p
"""
# ctid = ANY reads the locked rows by a TID scan whatever the statistics say, and the hash join (allowed for
# this statement alone) pairs them with their labels: a table written faster than it is analysed looks tiny
# to the planner, which then compared every label with every row (10,000 labels by 100,000 rows: past the
# statement timeout; 0.1 s this way).
_HASH_JOIN = "SET LOCAL enable_hashjoin = on"
_LABEL = """
UPDATE predictions AS p
SET label = u.label, label_ts = u.label_ts, labelled_at = extract(epoch FROM now())::double precision,
    label_seq = nextval('predictions_label_seq')
FROM unnest(%(ids)s::tid[], %(labels)s::text[], %(ts)s::double precision[]) AS u (id, label, label_ts)
WHERE p.ctid = ANY (%(ids)s::tid[]) AND p.ctid = u.id AND p.labelled_at IS NULL
RETURNING p.request_id, p.row_index, p.labelled_at
"""
_LABELLED = """
SELECT request_id, row_index, ts, model, version, variant, prediction, scores, weight, segments,
       label, label_ts, labelled_at
FROM predictions WHERE ts >= %s AND labelled_at IS NOT NULL
"""
# Ties in prediction time come back in one order on every replica.
_ORDER = " ORDER BY ts, request_id, row_index"
_COVERAGE = "SELECT count(*), count(labelled_at) FROM predictions WHERE ts >= %s"
# The sum, not the max: it also moves when a label committed late enters as another leaves the window.
_MARKER = (
    "SELECT count(*), coalesce(sum(label_seq), 0)::bigint FROM predictions WHERE ts >= %s AND labelled_at IS NOT NULL"
)
_ESTIMATED = (
    "SELECT variant, sum(weight * confidence), sum(weight), count(*) FROM predictions"
    " WHERE ts >= %s AND confidence IS NOT NULL"
)
_BY_VARIANT = " GROUP BY variant"
_BY_MODEL = " AND model = %s"
_COUNT = "SELECT count(*) FROM predictions WHERE true"
# ctid = ANY(ARRAY(...)) is a TID scan: the rows the subquery found, and no others visited.
_EVICT_TTL = (
    "DELETE FROM predictions WHERE ctid = ANY (ARRAY(SELECT ctid FROM predictions WHERE ts < %s{model} LIMIT %s))"
)
_EVICT_OLDEST = (
    "DELETE FROM predictions WHERE ctid = ANY (ARRAY("
    "SELECT ctid FROM predictions WHERE true{model} ORDER BY ts LIMIT %s))"
)

# An experiment's outcomes (sidecar.store.experiment says what they join and how they are summed).
# By request: the predictions of each item's request id, and row if it has one, as labels match them.
_OUTCOME_REQUESTS = """
SELECT i.n, p.row_index, p.model, p.variant, p.unit, p.ts
FROM unnest(%s::text[], %s::integer[]) WITH ORDINALITY AS i (request_id, row_index, n)
JOIN predictions AS p ON p.request_id = i.request_id AND (i.row_index IS NULL OR p.row_index = i.row_index)
"""
# By unit: the model and arm of the unit's first prediction in the arms, and its latest prediction's time.
_OUTCOME_UNITS = """
SELECT i.n, f.model, f.variant, l.ts
FROM unnest(%(units)s::text[]) WITH ORDINALITY AS i (unit, n)
CROSS JOIN LATERAL (
    SELECT model, variant FROM predictions WHERE unit = i.unit AND variant = ANY (%(arms)s)
    ORDER BY ts, request_id, row_index LIMIT 1
) AS f
CROSS JOIN LATERAL (SELECT max(ts) AS ts FROM predictions WHERE unit = i.unit AND variant = ANY (%(arms)s)) AS l
"""
# In key order, so that two replicas' batches wait on each other rather than deadlock.
_OUTCOME_INSERT = """
INSERT INTO outcomes (experiment, metric, kind, key, row_index, value, ts, received_at, model, variant, unit,
                      exposed_at)
SELECT %(experiment)s, u.metric, u.kind, u.key, u.row_index, u.value, u.ts,
       extract(epoch FROM now())::double precision, u.model, u.variant, u.unit, u.exposed_at
FROM unnest(%(metric)s::text[], %(kind)s::text[], %(key)s::text[], %(row)s::integer[], %(value)s::double precision[],
            %(ts)s::double precision[], %(model)s::text[], %(variant)s::text[], %(unit)s::text[],
            %(exposed)s::double precision[])
     AS u (metric, kind, key, row_index, value, ts, model, variant, unit, exposed_at)
ORDER BY u.metric, u.kind, u.key, u.row_index
ON CONFLICT DO NOTHING
RETURNING metric, kind, key, row_index
"""
# After predictions are evicted, the outcomes exposed before the oldest one left go, but an outcome by unit
# stays (dated by its unit's latest prediction, or the cutoff, whichever is later) while the unit has any.
_OLDEST = "SELECT min(ts) FROM predictions WHERE true{model}"
_EVICT_OUTCOMES = """
DELETE FROM outcomes WHERE ctid = ANY (ARRAY(
    SELECT o.ctid FROM outcomes AS o WHERE o.exposed_at < %s{outcome_model}
       AND (o.kind = 'request' OR NOT EXISTS (SELECT 1 FROM predictions AS p WHERE p.unit = o.key{same_model}))
    LIMIT %s))
"""
_KEEP_UNIT_OUTCOMES = """
UPDATE outcomes AS o
SET exposed_at = greatest((SELECT max(p.ts) FROM predictions AS p WHERE p.unit = o.key{same_model}), %s)
WHERE o.ctid = ANY (ARRAY(SELECT ctid FROM outcomes WHERE kind = 'unit' AND exposed_at < %s{model} LIMIT %s))
"""
# The analysis units of the arms in the window: a unit's first exposure, the segment it had then, its
# exposures, and a number.
_UNITS = """
u AS (
    SELECT variant, unit IS NULL AS single, coalesce(unit, request_id) AS k, min(ts) AS first_ts,
           (array_agg(segment ORDER BY ts, request_id, row_index))[1] AS segment,
           count(*)::double precision AS x, row_number() OVER () - 1 AS id
    FROM predictions
    WHERE ts >= %(since)s AND variant = ANY (%(arms)s){model}
    GROUP BY 1, 2, 3
)"""
_OUTCOME_SUMS = """
WITH {units},
o AS (
    SELECT variant, unit IS NULL AS single, coalesce(unit, key) AS k, sum(value) AS y,
           count(*) FILTER (WHERE kind = 'request') AS by_request, count(*) FILTER (WHERE kind = 'unit') AS by_unit
    FROM outcomes
    WHERE experiment = %(experiment)s AND metric = %(metric)s AND (kind = 'unit' OR exposed_at >= %(since)s){model}
    GROUP BY 1, 2, 3
)
SELECT u.variant, u.segment, count(*)::double precision, coalesce(sum(o.y), 0), sum(u.x),
       coalesce(sum(o.y * o.y), 0), sum(u.x * u.x), coalesce(sum(u.x * o.y), 0),
       coalesce(sum(o.by_request), 0)::bigint, coalesce(sum(o.by_unit), 0)::bigint
FROM u LEFT JOIN o ON o.variant = u.variant AND o.single = u.single AND o.k = u.k
GROUP BY u.variant, u.segment
"""
_PERIOD_SUMS = """
WITH e AS MATERIALIZED (
    SELECT variant, unit IS NULL AS single, coalesce(unit, request_id) AS k, request_id, row_index, ts
    FROM predictions
    WHERE ts >= %(since)s AND variant = ANY (%(arms)s){model}
),
f AS (
    SELECT variant, single, k, CASE WHEN %(calendar)s THEN (SELECT min(ts) FROM e) ELSE min(ts) END AS t0
    FROM e GROUP BY 1, 2, 3
),
p AS (
    SELECT e.variant, e.single, e.k, least(floor((e.ts - f.t0) / %(period)s)::integer, %(last)s) AS period,
           count(*)::double precision AS x, coalesce(sum(o.value), 0) AS y
    FROM e JOIN f ON f.variant = e.variant AND f.single = e.single AND f.k = e.k
    LEFT JOIN outcomes AS o
      ON o.experiment = %(experiment)s AND o.metric = %(metric)s AND o.kind = 'request'
     AND o.key = e.request_id AND o.row_index = e.row_index
    GROUP BY 1, 2, 3, 4
)
SELECT variant, period, count(*)::double precision, sum(y), sum(x), sum(y * y), sum(x * x), sum(x * y)
FROM p GROUP BY 1, 2
"""
# One pass over the window, sorted by analysis unit then time: each row learns its unit's number, first
# exposure and segment then, and only the labelled rows carry their JSON out.
_LABELLED_EXPOSURES = """
WITH w AS (
    SELECT variant, labelled_at IS NOT NULL AS labelled, ts,
           first_value(ts) OVER unit AS first_ts, first_value(segment) OVER unit AS segment,
           dense_rank() OVER (ORDER BY variant, unit IS NULL, coalesce(unit, request_id)) - 1 AS id,
           min(ts) OVER () AS t0,
           CASE WHEN labelled_at IS NOT NULL THEN prediction END AS prediction,
           CASE WHEN labelled_at IS NOT NULL THEN scores END AS scores,
           CASE WHEN labelled_at IS NOT NULL THEN label END AS label
    FROM predictions
    WHERE ts >= %(since)s AND variant = ANY (%(arms)s){model}
    WINDOW unit AS (PARTITION BY variant, unit IS NULL, coalesce(unit, request_id) ORDER BY ts, request_id, row_index)
)
SELECT id, variant, segment,
       least(floor((ts - CASE WHEN %(calendar)s THEN t0 ELSE first_ts END) / %(period)s)::integer, %(last)s),
       prediction, scores, label
FROM w WHERE labelled
"""
_EXPERIMENT_UNITS = """
SELECT variant, count(DISTINCT unit), count(DISTINCT request_id) FILTER (WHERE unit IS NULL)
FROM predictions WHERE ts >= %(since)s AND variant = ANY (%(arms)s){model}
GROUP BY variant
"""
_OF_MODEL = " AND model = %(model)s"
# In key order, so that two replicas' batches wait on each other rather than deadlock.
_SHADOW_INSERT = """
INSERT INTO shadow_predictions (experiment, request_id, row_index, ts, model, variant, prediction, scores, confidence)
SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], %s::double precision[], %s::text[], %s::text[],
                     %s::text[], %s::text[], %s::double precision[]) AS u
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""
# The challenger's rows of predictions no longer stored: those before the oldest prediction left.
_EVICT_SHADOW = (
    "DELETE FROM shadow_predictions WHERE ctid = ANY (ARRAY("
    "SELECT ctid FROM shadow_predictions WHERE ts < %s{model} LIMIT %s))"
)
# A shadow experiment's pairs: each challenger row with control's prediction of its request and row, in the
# window, and control's label if it has one; and control's predictions in the window, paired or not.
_SHADOW_PAIRS = """
SELECT p.prediction, p.scores, p.confidence, s.prediction, s.scores, s.confidence, p.label
FROM shadow_predictions AS s JOIN predictions AS p ON p.request_id = s.request_id AND p.row_index = s.row_index
WHERE s.experiment = %(experiment)s AND p.ts >= %(since)s AND p.variant = %(control)s{model}
"""
_CONTROL_ROWS = "SELECT count(*) FROM predictions WHERE ts >= %(since)s AND variant = %(control)s{model}"
_OF_PREDICTION_MODEL = " AND p.model = %(model)s"
# Two statements, each its own transaction (the connection autocommits): the read's snapshot is taken after
# the insert, or after the other replica's insert it waited for, so it sees whichever start won.
_EXPERIMENT_START = "INSERT INTO experiments (name, started_at) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
_EXPERIMENT_STARTED = "SELECT started_at FROM experiments WHERE name = %s"
# The writer's session plans nested loops only (see _NESTED_LOOPS_ONLY): right for the label join, hopeless for
# these aggregates, whose joins are of whole windows. The opposite holds here: with statistics that lag the
# writes, the planner took a window of 200,000 rows for 164 and looped over the outcomes once per row (past
# the timeout). They may take all of READ_TIMEOUT_SECONDS, in one snapshot.
_AGGREGATE = (
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    f"SET LOCAL statement_timeout = {int(READ_TIMEOUT_SECONDS * 1000)}",
    "SET LOCAL enable_hashjoin = on",
    "SET LOCAL enable_mergejoin = on",
    "SET LOCAL enable_nestloop = off",
)


class Database:
    """The prediction table in a PostgreSQL database, through one connection; see the module's docstring.

    ``model``, when given, scopes eviction and the row count to that model's
    rows, so that several models' sidecars may share one database.

    Usage, from one thread::

        db = Database.connect("postgresql://sidecar:...@db/monitoring", ttl_seconds=86400.0,
                              max_rows=1_000_000, model="iris", role="writer")
        db.write([encode(record, ("country",)) for record in records], now=time.time())
        outcomes = db.attach([LabelItem("req-1", None, "setosa")], now=time.time())
        db.close()
    """

    def __init__(
        self,
        connection: psycopg.Connection[tuple[Any, ...]],
        location: str,
        secrets: tuple[str, ...],
        *,
        ttl_seconds: float,
        max_rows: int,
        model: str | None,
    ) -> None:
        self._db = connection
        self.location = location
        self._secrets = secrets
        self.ttl_seconds = ttl_seconds
        self.max_rows = max_rows
        self.model = model
        self.rows = 0

    @classmethod
    def connect(cls, url: str, *, ttl_seconds: float, max_rows: int, model: str | None, role: Role) -> Database:
        """Connect; the writer also creates or migrates the schema and counts the rows.

        Raises :class:`Unavailable` when the server cannot be reached (down,
        refused, no such host, timed out), and :class:`StoreError` naming
        ``SIDECAR_STATE_URL`` when retrying cannot help: a malformed URL, a
        failed login, a missing database, a newer schema.
        """
        location = mask_url(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # libpq's message may quote the URL, password included: say only what is wrong with it.
            raise StoreError(
                f"SIDECAR_STATE_URL={location} is not a PostgreSQL connection URL libpq accepts; expected"
                " postgresql://user:password@host:5432/database"
            ) from None
        secrets = tuple(str(params[key]) for key in ("password",) if params.get(key))
        for key, value in {"connect_timeout": str(CONNECT_TIMEOUT_SECONDS), **_KEEPALIVE}.items():
            params.setdefault(key, value)
        params.setdefault("application_name", f"ml-sidecar {role}")
        try:
            connection = psycopg.connect(make_conninfo("", **params), autocommit=True)
        except psycopg.Error as exc:
            raise _connect_error(exc, location, secrets) from None
        db = cls(connection, location, secrets, ttl_seconds=ttl_seconds, max_rows=max_rows, model=model)
        try:
            with db._errors():
                connection.execute(_SETUP, (_ms(STATEMENT_TIMEOUT_SECONDS), _ms(_IDLE_IN_TRANSACTION_SECONDS)))
                if role == "writer":
                    connection.execute(_NESTED_LOOPS_ONLY)
                    migrate(connection, location)
                    connection.execute(_INCOMING)
                    db.rows = db.count()
        except BaseException:
            connection.close()
            raise
        return db

    @property
    def broken(self) -> bool:
        """Whether the connection is lost: the next use must connect again."""
        return self._db.closed or self._db.broken

    def write(self, records: Sequence[tuple[Any, ...]], now: float) -> Written:
        """Insert encoded rows (:func:`encode`) in one transaction; eviction is the leader's (:meth:`evict`)."""

        def insert() -> int:
            with self._db.transaction(), self._db.cursor() as cursor:
                with cursor.copy(_COPY) as copy:
                    copy.set_types(_COPY_TYPES)
                    for record in records:
                        copy.write_row(record)
                cursor.execute(_INSERT)
                return cursor.rowcount

        inserted = self._retried(insert)
        self.rows += inserted
        return Written(inserted, len(records) - inserted, 0, 0)

    def write_shadow(self, records: Sequence[tuple[Any, ...]]) -> int:
        """Insert a challenger's encoded rows (:func:`encode_shadow`) in one transaction: the rows inserted.

        The first row of an (experiment, request id, row) wins, across replicas; eviction is the leader's.
        """
        columns = [list(column) for column in zip(*records, strict=True)]
        return self._retried(lambda: self._db.execute(_SHADOW_INSERT, columns).rowcount) if records else 0

    def attach(self, items: Sequence[object], now: float) -> list[Outcome]:
        """Join labels to stored predictions in one transaction: one :class:`Outcome` per item, in order.

        The first label of a prediction wins, within the batch, across batches
        and across replicas. ``now`` is unused: labels are dated by the
        database's clock, the one clock every replica shares.
        """
        outcomes: list[Outcome | None] = [None] * len(items)
        valid: dict[int, tuple[str, int | None, str, float | None]] = {}
        for i, item in enumerate(items):
            try:
                request_id, row, label, label_ts = encode_item(item)
            except ValueError as exc:
                outcomes[i] = Outcome("invalid", reason=str(exc))
                continue
            if "\x00" in request_id or (row is not None and row > _MAX_ROW):
                outcomes[i] = Outcome("unmatched")  # no stored prediction can have it
                continue
            valid[i] = (request_id, row, label, label_ts)
        if valid:
            decided = self._retried(lambda: self._attach(valid))
            for i, outcome in decided.items():
                outcomes[i] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def _attach(self, valid: dict[int, tuple[str, int | None, str, float | None]]) -> dict[int, Outcome]:
        keys = list(valid)  # WITH ORDINALITY's n is the position in this list, from 1
        outcomes: dict[int, Outcome] = {}
        with self._db.transaction():
            matches: dict[int, list[tuple[Any, ...]]] = {}
            ids = [valid[i][0] for i in keys]
            rows = [valid[i][1] for i in keys]
            for match in self._db.execute(_MATCH, (ids, rows)):
                matches.setdefault(keys[match[0] - 1], []).append(match)
            targets: dict[tuple[str, int], tuple[int, str, tuple[Any, ...]]] = {}
            for i, (request_id, row, label, label_ts) in valid.items():
                found = matches.get(i, [])
                if (decided := choose_row(request_id, row, [match[1] for match in found])) is not None:
                    outcomes[i] = decided
                    continue
                _, row_index, had_label, ctid, *prediction = found[0]
                key = (request_id, row_index)
                if had_label or key in targets:
                    outcomes[i] = Outcome("duplicate")
                    continue
                targets[key] = (i, ctid, (*prediction, label, label_ts))
            if not targets:
                return outcomes
            chosen = list(targets.values())
            updates = {
                "ids": [ctid for _, ctid, _ in chosen],
                "labels": [valid[i][2] for i, _, _ in chosen],
                "ts": [valid[i][3] for i, _, _ in chosen],
            }
            self._db.execute(_HASH_JOIN)
            cursor = self._db.execute(_LABEL, updates)
            stamped = {(request_id, row): at for request_id, row, at in cursor}
        for key, (i, _, joined) in targets.items():
            at = stamped.get(key)
            # Locked since the match, so each is labelled; a row missing here was labelled by another first.
            outcomes[i] = Outcome("duplicate") if at is None else Outcome("joined", labelled((*joined, at)))
        return outcomes

    def attach_outcomes(
        self, experiment: str, arms: Sequence[str], items: Sequence[object], now: float
    ) -> list[Outcome]:
        """Store an experiment's outcomes that join a prediction of its ``arms``, in one transaction.

        One :class:`Outcome` per item, in order; the first outcome of a key wins, within the batch, across
        batches and across replicas. ``now`` is unused: they are dated by the database's clock.
        """
        outcomes: list[Outcome | None] = [None] * len(items)
        valid: dict[int, tuple[str, float, str | None, int | None, str | None, float | None]] = {}
        for i, item in enumerate(items):
            try:
                encoded = encode_outcome(item)
            except ValueError as exc:
                outcomes[i] = Outcome("invalid", reason=str(exc))
                continue
            metric, _, request_id, row, unit, _ = encoded
            texts = (metric, request_id or "", unit or "")
            if any("\x00" in text for text in texts) or (row is not None and row > _MAX_ROW):
                outcomes[i] = Outcome("unmatched")  # no stored prediction can have it
                continue
            valid[i] = encoded
        if valid:
            decided = self._retried(lambda: self._attach_outcomes(experiment, list(arms), valid))
            for i, outcome in decided.items():
                outcomes[i] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def _attach_outcomes(
        self,
        experiment: str,
        arms: list[str],
        valid: dict[int, tuple[str, float, str | None, int | None, str | None, float | None]],
    ) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        rows: dict[tuple[str, str, str, int], tuple[int, OutcomeRow]] = {}

        def decide(i: int, decided: OutcomeRow | Outcome) -> None:
            if isinstance(decided, Outcome):
                outcomes[i] = decided
            elif decided.identity in rows:
                outcomes[i] = Outcome("duplicate")  # the batch's first item of a key wins
            else:
                rows[decided.identity] = (i, decided)

        with self._db.transaction():
            by_request = [i for i, item in valid.items() if item[4] is None]
            found: dict[int, list[tuple[int, str, str, str | None, float]]] = {}
            if by_request:
                ids = [valid[i][2] for i in by_request]
                wanted = [valid[i][3] for i in by_request]
                for n, *match in self._db.execute(_OUTCOME_REQUESTS, (ids, wanted)):
                    found.setdefault(by_request[n - 1], []).append((match[0], match[1], match[2], match[3], match[4]))
            by_unit = [i for i, item in valid.items() if item[4] is not None]
            first: dict[int, tuple[str, str, float]] = {}
            if by_unit:
                units = [valid[i][4] for i in by_unit]
                for n, model, variant, latest in self._db.execute(_OUTCOME_UNITS, {"units": units, "arms": arms}):
                    first[by_unit[n - 1]] = (model, variant, latest)
            for i in sorted(valid):
                item = valid[i]
                decide(
                    i,
                    match_unit(item, first.get(i))
                    if item[4] is not None
                    else match_request(item, found.get(i, []), arms),
                )
            if not rows:
                return outcomes
            chosen = [row for _, row in rows.values()]
            columns = {
                "experiment": experiment,
                "metric": [row.metric for row in chosen],
                "kind": [row.kind for row in chosen],
                "key": [row.key for row in chosen],
                "row": [row.row for row in chosen],
                "value": [row.value for row in chosen],
                "ts": [row.timestamp for row in chosen],
                "model": [row.model for row in chosen],
                "variant": [row.variant for row in chosen],
                "unit": [row.unit for row in chosen],
                "exposed": [row.exposed_at for row in chosen],
            }
            inserted = {tuple(key) for key in self._db.execute(_OUTCOME_INSERT, columns)}
        for identity, (i, row) in rows.items():
            # Not inserted: another batch, perhaps another replica's, stored that key first.
            outcomes[i] = Outcome("joined", variant=row.variant) if identity in inserted else Outcome("duplicate")
        return outcomes

    def experiment_units(self, arms: Sequence[str], since: float, model: str | None) -> npt.NDArray[np.int64]:
        """Per arm, the analysis units exposed at or after ``since``: (units, requests routed without one)."""
        with self._errors():
            with self._aggregating():
                rows = self._db.execute(
                    _EXPERIMENT_UNITS.format(model=self._of(model)), self._window(arms, since, model)
                ).fetchall()
        return collect_units(arms, rows)

    def outcome_sums(
        self,
        experiment: str,
        metric: str,
        arms: Sequence[str],
        since: float,
        model: str | None,
        period_seconds: float,
        calendar: bool,
    ) -> UnitSums:
        """One outcome metric's sums per arm, by segment and by period (:class:`~.experiment.UnitSums`)."""
        parameters = {
            **period_parameters(self._window(arms, since, model), period_seconds=period_seconds, calendar=calendar),
            "experiment": experiment,
            "metric": metric,
        }
        of_model = self._of(model)
        with self._errors():
            with self._aggregating():
                by_segment = self._db.execute(
                    _OUTCOME_SUMS.format(units=_UNITS.format(model=of_model), model=of_model), parameters
                ).fetchall()
                by_period = self._db.execute(_PERIOD_SUMS.format(model=of_model), parameters).fetchall()
        return collect_sums(arms, by_segment, by_period)

    def labelled_exposures(
        self, arms: Sequence[str], since: float, model: str | None, period_seconds: float, calendar: bool
    ) -> LabelledExposures:
        """The labelled predictions of the arms at or after ``since``, with their analysis unit, segment and period."""
        parameters = period_parameters(
            self._window(arms, since, model), period_seconds=period_seconds, calendar=calendar
        )
        query = _LABELLED_EXPOSURES.format(model=self._of(model))
        with self._errors():
            with self._aggregating():
                rows = self._db.execute(query, parameters).fetchall()
        return collect_exposures(arms, rows)

    def shadow_pairs(self, experiment: str, control: str, since: float, model: str | None) -> ShadowPairs:
        """The challenger's rows of ``experiment`` paired with control's predictions made at or after ``since``."""
        parameters = {"experiment": experiment, "control": control, "since": since, "model": model}
        of_model = "" if model is None else _OF_PREDICTION_MODEL
        with self._errors():
            # One snapshot for both, so the count and the pairs see the same rows.
            with self._aggregating():
                row = self._db.execute(_CONTROL_ROWS.format(model=self._of(model)), parameters).fetchone()
                pairs = self._db.execute(_SHADOW_PAIRS.format(model=of_model), parameters).fetchall()
        return collect_pairs(0 if row is None else int(row[0]), pairs)

    def experiment_started(self, name: str, now: float) -> float:
        """When the experiment ``name`` first ran on any replica: ``now`` if it never had, else the time recorded."""
        self._retried(lambda: self._db.execute(_EXPERIMENT_START, (name, now)))
        with self._errors():
            row = self._db.execute(_EXPERIMENT_STARTED, (name,)).fetchone()
        if row is None:
            raise Refused(f"experiment {name!r} has no start time after it was recorded")  # pragma: no cover
        return float(row[0])

    @contextlib.contextmanager
    def _aggregating(self) -> Iterator[None]:
        with self._db.transaction():
            for statement in _AGGREGATE:
                self._db.execute(statement)
            yield

    @staticmethod
    def _window(arms: Sequence[str], since: float, model: str | None) -> dict[str, Any]:
        return {"since": since, "arms": list(arms), "model": model}

    @staticmethod
    def _of(model: str | None) -> str:
        return "" if model is None else _OF_MODEL

    def labelled(self, since: float, model: str | None) -> list[Labelled]:
        """Labelled predictions made at or after ``since``, oldest first (ties by request id and row)."""

        def read() -> list[Labelled]:
            with self._db.transaction():
                self._db.execute(f"SET LOCAL statement_timeout = {_ms(READ_TIMEOUT_SECONDS)}")
                return [labelled(row) for row in self._select(_LABELLED, since, model, _ORDER)]

        with self._errors():
            return read()

    def coverage(self, since: float, model: str | None) -> Coverage:
        """Predictions made at or after ``since``, and how many of them are labelled."""
        with self._errors():
            predictions, labelled_rows = self._select(_COVERAGE, since, model).fetchone() or (0, 0)
        return Coverage(predictions, labelled_rows)

    def label_marker(self, since: float, model: str | None) -> tuple[int, int]:
        """(labelled predictions made at or after ``since``, the sum of their label numbers), from one index."""
        with self._errors():
            count, total = self._select(_MARKER, since, model).fetchone() or (0, 0)
        return count, total

    def estimated(self, since: float, model: str | None) -> dict[str, Estimate]:
        """Per variant, the weighted mean confidence of the predictions made at or after ``since`` that had one."""
        with self._errors():
            rows = self._select(_ESTIMATED, since, model, _BY_VARIANT).fetchall()
        return {variant: Estimate(weighted / weight, weight, n) for variant, weighted, weight, n in rows if weight > 0}

    def evict(self, now: float) -> tuple[int, int]:
        """Delete what is past the TTL, then the oldest past ``max_rows``, in batches: counts (ttl, max_rows).

        Each batch is its own transaction. ``max_rows`` is checked against an
        exact count, once per call: at a million rows, about 0.07 s as an
        index-only scan once autovacuum has set the visibility map, a few
        tenths of a second before.
        """
        scope = "" if self.model is None else _BY_MODEL
        by_model = () if self.model is None else (self.model,)
        with self._errors():
            expired = (_EVICT_TTL.format(model=scope), (now - self.ttl_seconds, *by_model), EVICT_BATCH_ROWS)
            ttl = deleted = self._delete(*expired)
            while deleted == EVICT_BATCH_ROWS:  # a full batch: there may be more
                deleted = self._delete(*expired)
                ttl += deleted
            rows = self.count()
            oldest = 0
            while (excess := rows - oldest - self.max_rows) > 0:
                deleted = self._delete(_EVICT_OLDEST.format(model=scope), by_model, min(excess, EVICT_BATCH_ROWS))
                if deleted == 0:
                    break
                oldest += deleted
            self._evict_outcomes(scope, by_model)
        self.rows = rows - oldest
        return ttl, oldest

    def _evict_outcomes(self, scope: str, by_model: tuple[str, ...]) -> None:
        """The outcomes and the challenger's predictions of predictions no longer stored: in batches, as
        predictions are evicted."""
        row = self._db.execute(_OLDEST.format(model=scope), by_model).fetchone()
        cutoff = math.inf if row is None or row[0] is None else float(row[0])
        same_model = "" if self.model is None else " AND p.model = o.model"
        outcome_model = "" if self.model is None else " AND o.model = %s"
        statements = (
            (_EVICT_OUTCOMES.format(outcome_model=outcome_model, same_model=same_model), (cutoff, *by_model)),
            (_KEEP_UNIT_OUTCOMES.format(model=scope, same_model=same_model), (cutoff, cutoff, *by_model)),
            (_EVICT_SHADOW.format(model=scope), (cutoff, *by_model)),
        )
        for statement, parameters in statements:
            # Each batch moves its rows past the cutoff or deletes them, so the loop ends.
            while self._delete(statement, parameters, EVICT_BATCH_ROWS) == EVICT_BATCH_ROWS:
                pass

    def count(self) -> int:
        """The table's rows (of the model, when the database has one): exact, O(rows)."""
        scope = "" if self.model is None else _BY_MODEL
        with self._errors():
            row = self._db.execute(_COUNT + scope, () if self.model is None else (self.model,)).fetchone()
        return 0 if row is None else int(row[0])

    def try_lock(self, key: int) -> bool:
        """Take the session-level advisory lock ``key`` if nobody holds it; never waits."""
        with self._errors():
            row = self._db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])

    def ping(self) -> None:
        """One round trip: :class:`Unavailable` if the connection is gone."""
        with self._errors():
            self._db.execute("SELECT 1")

    def close(self) -> None:
        """Close the connection; the server then releases its session's advisory locks."""
        self._db.close()

    def _select(self, head: str, since: float, model: str | None, tail: str = "") -> psycopg.Cursor[tuple[Any, ...]]:
        if model is None:
            return self._db.execute(head + tail, (since,))
        return self._db.execute(head + _BY_MODEL + tail, (since, model))

    def _delete(self, statement: str, parameters: tuple[Any, ...], limit: int) -> int:
        """One batch of at most ``limit`` rows, in a transaction of its own (the connection autocommits)."""
        return self._retried(lambda: self._db.execute(statement, (*parameters, limit)).rowcount)

    def _retried(self, work: Callable[[], T]) -> T:
        """``work`` (one transaction), again after a deadlock or serialization failure; errors translated."""
        attempts = 1
        with self._errors():
            while True:
                try:
                    return work()
                except errors.TransactionRollback:
                    if attempts == _ATTEMPTS:
                        raise
                    attempts += 1

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg's errors as the store's: a lost or too slow connection is :class:`Unavailable`."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise Unavailable(_scrub(str(exc), self._secrets)) from exc
        except psycopg.Error as exc:
            if self.broken:
                raise Unavailable(_scrub(str(exc), self._secrets)) from exc
            raise Refused(_scrub(str(exc), self._secrets)) from exc


def _connect_error(exc: psycopg.Error, location: str, secrets: tuple[str, ...]) -> StoreError:
    message = " ".join(_scrub(str(exc), secrets).split())
    if any(fragment in message for fragment in _DEFINITE):
        return StoreError(
            f"cannot use the prediction store at SIDECAR_STATE_URL={location}: {message}. Check the URL (its user,"
            " password, database name and options, or SIDECAR_STATE_URL_FILE's content) and that the user may"
            " connect"
        )
    return Unavailable(message)


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    """The message without the password, should a driver ever quote it."""
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def encode(record: PredictionRecord, segment_features: tuple[str, ...]) -> tuple[Any, ...]:
    """A record as one row of :meth:`Database.write`'s ``COPY``: only the segment features kept, never the dict.

    ``ValueError`` for what PostgreSQL's text and integer columns cannot hold
    (a NUL character, a row index past 2**31 - 1), so that one bad record
    costs its own row, not its batch.
    """
    features = record.features
    version = record.model_version
    request_id = record.request_id
    unit, segment = record.unit, record.segment
    if any(text is not None and "\x00" in text for text in (request_id, version, unit, segment)):
        raise ValueError("PostgreSQL text cannot hold a NUL character")
    if not 0 <= record.row <= _MAX_ROW:
        raise ValueError(f"row {record.row} is out of range")
    return (
        request_id,
        record.row,
        float(record.timestamp),
        record.model_name,
        version,
        record.variant,
        dumps(record.prediction),
        None if record.scores is None else dumps(record.scores),
        float(record.weight),
        dumps({name: features.get(name) for name in segment_features}) if segment_features else None,
        confidence(record),
        unit,
        segment,
    )


# CPython's objects around an encoded row's text, as sqlite.encoded_bytes counts them.
_ROW_OVERHEAD = 384


def encoded_bytes(row: tuple[Any, ...]) -> int:
    """The memory an :func:`encode` row holds, estimated: its strings' lengths plus object overhead."""
    request_id, _, _, _, version, _, prediction, scores, _, segments, _, unit, segment = row
    size = _ROW_OVERHEAD + len(request_id) + len(prediction)
    for text in (version, scores, segments, unit, segment):
        if text is not None:
            size += len(text)
    return size


def encode_shadow(record: PredictionRecord, experiment: str) -> tuple[Any, ...]:
    """A challenger's record of a shadow ``experiment`` as one row of :meth:`Database.write_shadow`.

    ``record.timestamp`` is control's prediction time, by which the row is evicted. ``ValueError`` for what
    PostgreSQL cannot hold, as :func:`encode` says.
    """
    request_id = record.request_id
    if "\x00" in request_id or "\x00" in experiment:
        raise ValueError("PostgreSQL text cannot hold a NUL character")
    if not 0 <= record.row <= _MAX_ROW:
        raise ValueError(f"row {record.row} is out of range")
    return (
        experiment,
        request_id,
        record.row,
        float(record.timestamp),
        record.model_name,
        record.variant,
        dumps(record.prediction),
        None if record.scores is None else dumps(record.scores),
        confidence(record),
    )


def shadow_bytes(row: tuple[Any, ...]) -> int:
    """The memory an :func:`encode_shadow` row holds, estimated as :func:`encoded_bytes` does."""
    _, request_id, _, _, _, _, prediction, scores, _ = row
    return _ROW_OVERHEAD + len(request_id) + len(prediction) + (0 if scores is None else len(scores))
