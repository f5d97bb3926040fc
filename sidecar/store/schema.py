"""The PostgreSQL store's schema, created and migrated at start by one replica at a time.

Every replica runs :func:`migrate` when its writer connects. It takes a
transaction-level advisory lock (:data:`SCHEMA_LOCK`), so replicas that start
together queue, and the first creates what is missing while the others find
it done; the lock goes with the transaction. The version applied is a row in
``sidecar_schema_version``. A database at a newer version than this sidecar
knows (a newer sidecar migrated it) stops start-up with a :class:`StoreError`:
an older sidecar must not write to a table it does not understand.

The columns are those of the SQLite store, typed:

- ``double precision`` for times (Unix seconds) and weights, so a value reads
  back as the float that went in, on either backend;
- ``text`` for the JSON columns (prediction, scores, segments, label): the
  store never looks inside them in SQL, text costs the server no parsing on
  the insert path, and it reads back byte for byte what SQLite holds. A later
  migration can make one ``jsonb`` (``ALTER COLUMN ... TYPE jsonb USING
  column::jsonb``) if SQL ever needs to;
- ``confidence``: the top probability if in [0, 1], else NULL, for the
  accuracy estimated over every prediction in one indexed aggregate;
- ``label_seq``: numbers labels as they arrive (a sequence), for the cheap
  change marker;
- ``unit`` and ``segment`` (version 2): the experiment's assignment unit and
  segment_by value of the request, if it had them.

Version 2 adds the ``outcomes`` table, an experiment's business outcomes
(:mod:`.experiment`), unique per (experiment, metric, kind, key, row) so the
first of a key wins across replicas, with the joined prediction's model, arm,
unit and time (``exposed_at``, by which it is evicted).

Version 3 adds the ``experiments`` table: when each experiment first ran on
any replica, where its analysis window starts (the first replica to record
it wins; the others read its time).

Version 4 adds the ``shadow_predictions`` table: a shadow experiment's
challenger predictions (:mod:`.shadow`), unique per (experiment, request id,
row) so the first is kept across replicas, dated by control's prediction
time (``ts``), by which the leader evicts them with the predictions of that time.

The indexes are those the store's queries need: the key (request id, row)
for conflicts and the label join; (model, ts) for windows, coverage, the
estimate, the count and eviction; a partial (model, ts) INCLUDE
(label_seq) over labelled rows only, for reading the labelled window and for
the change marker from the index alone; a partial ``unit`` for outcomes
posted by unit; the outcomes' (model, exposed_at), for their eviction; and the
challenger predictions' key, for pairing them with control's, and their
(model, ts), for their eviction.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from sidecar.store.values import StoreError

__all__ = ["SCHEMA_LOCK", "SCHEMA_VERSION", "VERSION_TABLE", "lock_key", "migrate"]

SCHEMA_VERSION = 4
VERSION_TABLE = "sidecar_schema_version"


def lock_key(name: str) -> int:
    """An advisory lock's bigint key: the first 8 bytes of SHA-256 of ``name``, as a signed integer.

    ``pg_locks`` shows it split: ``classid`` the high 32 bits, ``objid`` the
    low 32 bits, ``objsubid`` 1.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


SCHEMA_LOCK = lock_key("ml-sidecar schema")

_MIGRATIONS = {
    1: [
        """
        CREATE TABLE predictions (
            request_id  text             NOT NULL,
            row_index   integer          NOT NULL,
            ts          double precision NOT NULL,  -- prediction time, Unix seconds, by the replica's clock
            model       text             NOT NULL,
            version     text,
            variant     text             NOT NULL,
            prediction  text             NOT NULL,  -- JSON
            scores      text,                       -- JSON array, or NULL
            weight      double precision NOT NULL,  -- 1/p
            segments    text,                       -- JSON object of the segment features only, or NULL
            label       text,                       -- JSON, NULL until labelled
            label_ts    double precision,           -- when the outcome happened, if the caller said
            labelled_at double precision,           -- when the label arrived, by the database's clock
            confidence  double precision,           -- the top probability if in [0, 1], else NULL
            label_seq   bigint,                     -- the label's number, from predictions_label_seq
            CONSTRAINT predictions_key UNIQUE (request_id, row_index)
        )
        """,
        "CREATE SEQUENCE predictions_label_seq AS bigint OWNED BY predictions.label_seq",
        "CREATE INDEX predictions_model_ts ON predictions (model, ts)",
        "CREATE INDEX predictions_labelled ON predictions (model, ts) INCLUDE (label_seq)"
        " WHERE labelled_at IS NOT NULL",
    ],
    2: [
        # Without a default, adding a column rewrites nothing: instant, whatever the table's size.
        "ALTER TABLE predictions ADD COLUMN unit text, ADD COLUMN segment text",
        "CREATE INDEX predictions_unit ON predictions (unit) WHERE unit IS NOT NULL",
        """
        CREATE TABLE outcomes (
            experiment  text             NOT NULL,
            metric      text             NOT NULL,
            kind        text             NOT NULL,  -- 'request' (key: the request id, with row_index) or 'unit'
            key         text             NOT NULL,
            row_index   integer          NOT NULL,  -- the request's row; 0 for a unit
            value       double precision NOT NULL,
            ts          double precision,           -- when it happened, if the caller said
            received_at double precision NOT NULL,  -- by the database's clock
            model       text             NOT NULL,  -- the joined prediction's model, arm and unit
            variant     text             NOT NULL,
            unit        text,
            exposed_at  double precision NOT NULL,  -- the joined prediction's time (a unit's latest)
            CONSTRAINT outcomes_key UNIQUE (experiment, metric, kind, key, row_index)
        )
        """,
        "CREATE INDEX outcomes_exposed ON outcomes (model, exposed_at)",
    ],
    3: [
        """
        CREATE TABLE experiments (
            name        text             PRIMARY KEY,
            started_at  double precision NOT NULL  -- Unix seconds, by the clock of the replica that recorded it
        )
        """,
    ],
    4: [
        """
        CREATE TABLE shadow_predictions (
            experiment  text             NOT NULL,
            request_id  text             NOT NULL,
            row_index   integer          NOT NULL,
            ts          double precision NOT NULL,  -- control's prediction time, Unix seconds
            model       text             NOT NULL,
            variant     text             NOT NULL,  -- the challenger
            prediction  text             NOT NULL,  -- JSON
            scores      text,                       -- JSON array, or NULL
            confidence  double precision,           -- the top probability if in [0, 1], else NULL
            CONSTRAINT shadow_predictions_key UNIQUE (experiment, request_id, row_index)
        )
        """,
        "CREATE INDEX shadow_predictions_model_ts ON shadow_predictions (model, ts)",
    ],
}


def migrate(connection: psycopg.Connection[tuple[Any, ...]], location: str) -> None:
    """Create or migrate the schema to :data:`SCHEMA_VERSION` under the advisory lock; idempotent.

    Raises :class:`StoreError`, naming ``SIDECAR_STATE_URL`` (``location`` is
    masked), for a newer version or a ``predictions`` table this store did not
    create. psycopg's errors pass through, for the caller to translate.
    """
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        # Looked up first: a user allowed to write but not to create may still start once the schema exists.
        if _exists(connection, VERSION_TABLE):
            row = connection.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()
            version = 0 if row is None else int(row[0])
        else:
            if _exists(connection, "predictions"):
                raise StoreError(
                    f"the database at SIDECAR_STATE_URL={location} has a predictions table that no ml-sidecar"
                    " created (no sidecar_schema_version table); point SIDECAR_STATE_URL at a database of its own"
                )
            connection.execute(
                f"CREATE TABLE {VERSION_TABLE} (version integer PRIMARY KEY, applied_at timestamptz NOT NULL"
                " DEFAULT now())"
            )
            version = 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the prediction store at SIDECAR_STATE_URL={location} has schema version {version}, and this"
                f" sidecar reads version {SCHEMA_VERSION}: a newer ml-sidecar migrated it. Run that version, or"
                " point SIDECAR_STATE_URL at another database"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                connection.execute(statement)
            connection.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (step,))


def _exists(connection: psycopg.Connection[tuple[Any, ...]], table: str) -> bool:
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])
