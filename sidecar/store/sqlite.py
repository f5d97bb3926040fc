"""The SQLite backend of the prediction store: the file, its schema, and every statement.

Blocking, and owned by one thread: :class:`Database` is opened, used and
closed by the store's writer thread only (``sqlite3`` enforces it). It is one
of the two modules that speak SQL (:mod:`.postgres` is the other), and
implements :class:`~sidecar.store.backend.Backend`.

The file is in WAL mode with ``synchronous=NORMAL``: a committed batch
survives a crash of the process, and a power loss may lose the last few
batches, which monitoring can afford. Each public method is one transaction.
"""

from __future__ import annotations

import functools
import logging
import math
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from sidecar.records import PredictionRecord
from sidecar.store.backend import Refused, Written
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
from sidecar.store.shadow import ShadowPairs, collect_pairs
from sidecar.store.values import Coverage, Estimate, Labelled, Outcome, StoreError, choose_row, encode_item

__all__ = ["Database", "SCHEMA_VERSION", "encode", "encode_shadow", "encoded_bytes", "shadow_bytes"]

logger = logging.getLogger("sidecar.store")

P = ParamSpec("P")
R = TypeVar("R")

SCHEMA_VERSION = 5  # PRAGMA user_version; bump with a migration (_MIGRATIONS) when the tables change
# The writer is the file's only writer, so waiting on a lock means another
# process shares the state directory; waiting long would only back the buffer up.
_BUSY_TIMEOUT_MS = 100
# Holds the indexes' upper levels and the recent pages; a sidecar's memory is
# the pod's, so the OS page cache keeps the rest of a large file.
_CACHE_KIB = 16 * 1024
# Labels land on scattered pages. Checkpointing every 32 MiB of WAL rather than
# SQLite's 4 MiB copies a page that several batches rewrote once, and syncs
# less often: about 1.3x the labels/s of benchmarks/label_ingest in random order.
_CHECKPOINT_PAGES = 8192

_SCHEMA = """
CREATE TABLE predictions (
    request_id  TEXT    NOT NULL,
    row_index   INTEGER NOT NULL,
    ts          REAL    NOT NULL,  -- prediction time, Unix seconds
    model       TEXT    NOT NULL,
    version     TEXT,
    variant     TEXT    NOT NULL,
    prediction  TEXT    NOT NULL,  -- JSON
    scores      TEXT,              -- JSON array, or NULL
    weight      REAL    NOT NULL,  -- 1/p
    segments    TEXT,              -- JSON object of the segment features only, or NULL
    label       TEXT,              -- JSON, NULL until labelled
    label_ts    REAL,              -- when the outcome happened, if the caller said
    labelled_at REAL,              -- when the label arrived; NULL means unlabelled
    confidence  REAL,              -- the top probability if in [0, 1], else NULL (version 2)
    label_seq   INTEGER,           -- numbers labels in the order they arrived (version 2)
    unit        TEXT,              -- the experiment's assignment unit, if the request had one (version 3)
    segment     TEXT,              -- the experiment's segment_by value, if the request had one (version 3)
    UNIQUE (request_id, row_index)
);
-- Windows, TTL and max-rows eviction all go by prediction time.
CREATE INDEX predictions_ts ON predictions (ts);
"""
# An experiment's business outcomes (version 3), and the unit index they join by.
_OUTCOMES = """
CREATE TABLE outcomes (
    experiment  TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,  -- 'request' (key: the request id, with row_index) or 'unit' (key: the unit)
    key         TEXT    NOT NULL,
    row_index   INTEGER NOT NULL,  -- the request's row; 0 for a unit
    value       REAL    NOT NULL,
    ts          REAL,              -- when it happened, if the caller said
    received_at REAL    NOT NULL,
    model       TEXT    NOT NULL,  -- the joined prediction's model, arm and unit (NULL: routed without one)
    variant     TEXT    NOT NULL,
    unit        TEXT,
    exposed_at  REAL    NOT NULL,  -- the joined prediction's time (a unit's latest): evicted after it
    UNIQUE (experiment, metric, kind, key, row_index)
);
CREATE INDEX outcomes_exposed ON outcomes (exposed_at);
CREATE INDEX predictions_unit ON predictions (unit) WHERE unit IS NOT NULL;
"""
# When each experiment first ran (version 4): its analysis window starts there, after restarts too.
_EXPERIMENTS = """
CREATE TABLE experiments (
    name        TEXT    PRIMARY KEY,
    started_at  REAL    NOT NULL   -- Unix seconds, by the clock of the store that first recorded it
);
"""
# A shadow experiment's challenger predictions (version 5), dated by control's prediction time and evicted by it.
_SHADOW = """
CREATE TABLE shadow_predictions (
    experiment  TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    row_index   INTEGER NOT NULL,
    ts          REAL    NOT NULL,  -- control's prediction time, Unix seconds
    model       TEXT    NOT NULL,
    variant     TEXT    NOT NULL,  -- the challenger
    prediction  TEXT    NOT NULL,  -- JSON
    scores      TEXT,              -- JSON array, or NULL
    confidence  REAL,              -- the top probability if in [0, 1], else NULL
    UNIQUE (experiment, request_id, row_index)
);
CREATE INDEX shadow_predictions_ts ON shadow_predictions (ts);
"""
# Each migration takes the file from the version before it; the new columns come last, as ALTER TABLE
# adds them, so a migrated file and a new one have the same columns in the same order.
# The labelled rows of a window, and label_marker() from the index alone (version 2).
_LABELLED_INDEX = """
CREATE INDEX predictions_labelled ON predictions (model, ts, label_seq) WHERE labelled_at IS NOT NULL;
"""
_MIGRATIONS = {
    2: """
ALTER TABLE predictions ADD COLUMN confidence REAL;
ALTER TABLE predictions ADD COLUMN label_seq INTEGER;
UPDATE predictions SET label_seq = rowid WHERE labelled_at IS NOT NULL;
"""
    + _LABELLED_INDEX,
    3: """
ALTER TABLE predictions ADD COLUMN unit TEXT;
ALTER TABLE predictions ADD COLUMN segment TEXT;
"""
    + _OUTCOMES,
    4: _EXPERIMENTS,
    5: _SHADOW,
}
_COLUMNS = (
    "request_id",
    "row_index",
    "ts",
    "model",
    "version",
    "variant",
    "prediction",
    "scores",
    "weight",
    "segments",
    "label",
    "label_ts",
    "labelled_at",
    "confidence",
    "label_seq",
    "unit",
    "segment",
)
# The columns each older version had, to migrate from.
_COLUMNS_AT = {1: _COLUMNS[:-4], 2: _COLUMNS[:-2], 3: _COLUMNS, 4: _COLUMNS}
# Rows go in by multi-row INSERT ... VALUES statements, a batch in a few of them. One statement
# is one sqlite3_step, so the GIL is released and retaken once per statement: executemany would
# do it for every row, and under a busy event loop each retake waits its turn, so the store's
# thread slowed serving by more than its own work. Bound parameters cost less than half what
# one JSON parameter read through json_each did, where every ``->>`` parsed the row's JSON again.
_INSERT_ROWS = 64  # rows per statement: 832 parameters, under SQLite's oldest limit of 999
_INSERT_HEAD = (
    "INSERT OR IGNORE INTO predictions (request_id, row_index, ts, model, version, variant, prediction, scores,"
    " weight, segments, confidence, unit, segment) VALUES "
)
# The columns that may be NULL (version, scores, segments, unit, segment) hold text otherwise, and
# encode() passes _NULL for a missing value, which NULLIF turns into NULL. Binding None itself
# costs sqlite3 a failed adapter lookup per value, a fifth of the insert's time; an int compares
# unequal to every text, so no stored value can change. A confidence is in [0, 1] (codec.confidence),
# so -1.0 stands for a missing one.
_NULL = 0
_NO_CONFIDENCE = -1.0
_INSERT_ROW = "(?,?,?,?,NULLIF(?,0),?,?,NULLIF(?,0),?,NULLIF(?,0),NULLIF(?,-1.0),NULLIF(?,0),NULLIF(?,0))"
# CPython's objects around an encoded row's text: the tuple, its two floats, and the headers
# of its strings (about 50 bytes each). An estimate, for the store's buffer bound in bytes.
_ROW_OVERHEAD = 384
# Statements of 64, 32, ..., 1 rows: a batch takes whole 64s and then its remainder's binary
# digits, so only seven statement texts exist and sqlite3's statement cache keeps them prepared.
_INSERTS = {size: _INSERT_HEAD + ",".join([_INSERT_ROW] * size) for size in (1, 2, 4, 8, 16, 32, _INSERT_ROWS)}
# The challenger's rows go in the same way: 9 parameters a row, 576 a statement.
_SHADOW_HEAD = (
    "INSERT OR IGNORE INTO shadow_predictions (experiment, request_id, row_index, ts, model, variant, prediction,"
    " scores, confidence) VALUES "
)
_SHADOW_ROW = "(?,?,?,?,?,?,?,NULLIF(?,0),NULLIF(?,-1.0))"
_SHADOW_INSERTS = {size: _SHADOW_HEAD + ",".join([_SHADOW_ROW] * size) for size in _INSERTS}
_EVICT_TTL = "DELETE FROM predictions WHERE ts < ?"
_EVICT_OLDEST = "DELETE FROM predictions WHERE rowid IN (SELECT rowid FROM predictions ORDER BY ts LIMIT ?)"
# The batch travels as one JSON parameter, [[item, request_id, row], ...]: no temporary table to fill.
# A null row matches every row of the request, so the caller can tell a batch request apart.
_MATCH = """
SELECT j.key, p.rowid, p.labelled_at IS NOT NULL,
       p.request_id, p.row_index, p.ts, p.model, p.version, p.variant, p.prediction, p.scores, p.weight, p.segments
FROM json_each(?) AS j JOIN predictions AS p
  ON p.request_id = json_extract(j.value, '$[0]')
 AND (json_extract(j.value, '$[1]') IS NULL OR p.row_index = json_extract(j.value, '$[1]'))
"""
_LABEL = "UPDATE predictions SET label = ?, label_ts = ?, labelled_at = ?, label_seq = ? WHERE rowid = ?"
_LABELLED = """
SELECT request_id, row_index, ts, model, version, variant, prediction, scores, weight, segments,
       label, label_ts, labelled_at
FROM predictions WHERE ts >= ? AND labelled_at IS NOT NULL
"""
_COVERAGE = "SELECT count(*), count(labelled_at) FROM predictions WHERE ts >= ?"
# The sum, not the max: it also moves when a label committed late enters as another leaves the window.
_MARKER = "SELECT count(*), coalesce(sum(label_seq), 0) FROM predictions WHERE ts >= ? AND labelled_at IS NOT NULL"
_ESTIMATED = "SELECT variant, sum(weight * confidence), sum(weight), count(*) FROM predictions WHERE ts >= ?"
_WITH_CONFIDENCE = " AND confidence IS NOT NULL"
_BY_VARIANT = " GROUP BY variant"
_BY_MODEL = " AND model = ?"
_ORDER = " ORDER BY ts"

# An experiment's outcomes (sidecar.store.experiment says what they join and how they are summed).
# By request: the predictions of each item's request id, and row if it has one, as labels match them.
_OUTCOME_REQUESTS = """
SELECT j.key, p.row_index, p.model, p.variant, p.unit, p.ts
FROM json_each(:batch) AS j JOIN predictions AS p
  ON p.request_id = json_extract(j.value, '$[0]')
 AND (json_extract(j.value, '$[1]') IS NULL OR p.row_index = json_extract(j.value, '$[1]'))
"""
# By unit: the model and arm of the unit's first prediction in the arms (SQLite's bare columns come from
# min()'s row), and its latest prediction's time.
_OUTCOME_UNITS = """
SELECT j.key, p.model, p.variant, min(p.ts),
       (SELECT max(q.ts) FROM predictions AS q
        WHERE q.unit = j.value AND q.variant IN (SELECT value FROM json_each(:arms)))
FROM json_each(:batch) AS j JOIN predictions AS p
  ON p.unit = j.value AND p.variant IN (SELECT value FROM json_each(:arms))
GROUP BY j.key
"""
_OUTCOME_INSERT = """
INSERT INTO outcomes (experiment, metric, kind, key, row_index, value, ts, received_at, model, variant, unit,
                      exposed_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
"""
# After predictions are evicted, the outcomes exposed before the oldest one left go, but an outcome by unit
# stays (dated by its unit's latest prediction, or the cutoff, whichever is later) while the unit has any.
_OLDEST = "SELECT min(ts) FROM predictions"
_EVICT_OUTCOMES = """
DELETE FROM outcomes WHERE exposed_at < :cutoff
  AND (kind = 'request' OR NOT EXISTS (SELECT 1 FROM predictions AS p WHERE p.unit = outcomes.key))
"""
# The challenger's rows of predictions no longer stored: those before the oldest prediction left.
_EVICT_SHADOW = "DELETE FROM shadow_predictions WHERE ts < :cutoff"
_KEEP_UNIT_OUTCOMES = """
UPDATE outcomes
SET exposed_at = max(coalesce((SELECT max(p.ts) FROM predictions AS p WHERE p.unit = outcomes.key), :cutoff), :cutoff)
WHERE kind = 'unit' AND exposed_at < :cutoff
"""
# The analysis units of the arms in the window: a unit's first exposure, the segment it had then (a bare
# column: min()'s row), its exposures, and a number.
_UNITS = """
u AS (
    SELECT variant, unit IS NULL AS single, coalesce(unit, request_id) AS k, min(ts) AS first_ts, segment,
           count(*) AS x, row_number() OVER () - 1 AS id
    FROM predictions
    WHERE ts >= :since AND variant IN (SELECT value FROM json_each(:arms)){model}
    GROUP BY variant, single, k
)"""
_OUTCOME_SUMS = """
WITH {units},
o AS (
    SELECT variant, unit IS NULL AS single, coalesce(unit, key) AS k, sum(value) AS y,
           sum(kind = 'request') AS by_request, sum(kind = 'unit') AS by_unit
    FROM outcomes
    WHERE experiment = :experiment AND metric = :metric AND (kind = 'unit' OR exposed_at >= :since){model}
    GROUP BY variant, single, k
)
SELECT u.variant, u.segment, count(*), total(o.y), sum(u.x), total(o.y * o.y), sum(u.x * u.x), total(u.x * o.y),
       total(o.by_request), total(o.by_unit)
FROM u LEFT JOIN o ON o.variant = u.variant AND o.single = u.single AND o.k = u.k
GROUP BY u.variant, u.segment
"""
_PERIOD_SUMS = """
WITH e AS (
    SELECT variant, unit IS NULL AS single, coalesce(unit, request_id) AS k, request_id, row_index, ts
    FROM predictions
    WHERE ts >= :since AND variant IN (SELECT value FROM json_each(:arms)){model}
),
f AS (
    SELECT variant, single, k, CASE WHEN :calendar THEN (SELECT min(ts) FROM e) ELSE min(ts) END AS t0
    FROM e GROUP BY variant, single, k
),
p AS (
    SELECT e.variant, e.single, e.k, min(CAST((e.ts - f.t0) / :period AS INTEGER), :last) AS period,
           count(*) AS x, total(o.value) AS y
    FROM e JOIN f ON f.variant = e.variant AND f.single = e.single AND f.k = e.k
    LEFT JOIN outcomes AS o
      ON o.experiment = :experiment AND o.metric = :metric AND o.kind = 'request'
     AND o.key = e.request_id AND o.row_index = e.row_index
    GROUP BY e.variant, e.single, e.k, period
)
SELECT variant, period, count(*), sum(y), sum(x), sum(y * y), sum(x * x), sum(x * y) FROM p GROUP BY variant, period
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
    WHERE ts >= :since AND variant IN (SELECT value FROM json_each(:arms)){model}
    WINDOW unit AS (PARTITION BY variant, unit IS NULL, coalesce(unit, request_id) ORDER BY ts, request_id, row_index)
)
SELECT id, variant, segment,
       min(CAST((ts - CASE WHEN :calendar THEN t0 ELSE first_ts END) / :period AS INTEGER), :last),
       prediction, scores, label
FROM w WHERE labelled
"""
_EXPERIMENT_UNITS = """
SELECT variant, count(DISTINCT unit), count(DISTINCT CASE WHEN unit IS NULL THEN request_id END)
FROM predictions WHERE ts >= :since AND variant IN (SELECT value FROM json_each(:arms)){model}
GROUP BY variant
"""
_OF_MODEL = " AND model = :model"
# A shadow experiment's pairs: each challenger row with control's prediction of its request and row, in the
# window, and control's label if it has one; and control's predictions in the window, paired or not.
_SHADOW_PAIRS = """
SELECT p.prediction, p.scores, p.confidence, s.prediction, s.scores, s.confidence, p.label
FROM shadow_predictions AS s JOIN predictions AS p ON p.request_id = s.request_id AND p.row_index = s.row_index
WHERE s.experiment = :experiment AND p.ts >= :since AND p.variant = :control{model}
"""
_CONTROL_ROWS = "SELECT count(*) FROM predictions WHERE ts >= :since AND variant = :control{model}"
_OF_PREDICTION_MODEL = " AND p.model = :model"
# The first start recorded wins; the file has one writer, so the read that follows sees it.
_EXPERIMENT_START = "INSERT INTO experiments (name, started_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
_EXPERIMENT_STARTED = "SELECT started_at FROM experiments WHERE name = ?"


def _refused(method: Callable[Concatenate[Database, P], R]) -> Callable[Concatenate[Database, P], R]:
    """SQLite's errors as :class:`Refused`: a file that is full, corrupt or locked fails the same rows again."""

    @functools.wraps(method)
    def translated(self: Database, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise Refused(str(exc)) from exc

    return translated


class Database:
    """The prediction table in one SQLite file, bounded by age and by row count.

    Usage, from one thread::

        db = Database.open(Path("/var/lib/ml-sidecar/predictions.db"), ttl_seconds=30 * 86400, max_rows=1_000_000)
        db.write([encode(record, ("country",)) for record in records], now=time.time())
        outcomes = db.attach([LabelItem("req-1", None, "setosa")], now=time.time())
        db.close()
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        rows: int,
        *,
        ttl_seconds: float,
        max_rows: int,
    ) -> None:
        self._db = connection
        self.rows = rows  # kept here rather than counted, since count(*) is O(rows)
        self.ttl_seconds = ttl_seconds
        self.max_rows = max_rows
        # One writer numbers the labels: the last number given, carried on from the file.
        self._label_seq: int = connection.execute("SELECT coalesce(max(label_seq), 0) FROM predictions").fetchone()[0]

    @classmethod
    def open(cls, path: Path, *, ttl_seconds: float, max_rows: int) -> Database:
        """Open or create the file; :class:`StoreError` naming ``SIDECAR_STATE_DIR`` if it cannot be used."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise _unusable(path, exc) from exc
        try:
            rows = _prepare(connection, path)
            return cls(connection, rows, ttl_seconds=ttl_seconds, max_rows=max_rows)
        except (sqlite3.Error, StoreError) as exc:
            connection.close()
            if isinstance(exc, StoreError):
                raise
            raise _unusable(path, exc) from exc

    @property
    def broken(self) -> bool:
        """A file is never lost the way a connection is: failures are each statement's."""
        return False

    @_refused
    def ping(self) -> None:
        """Read the schema version: the file still answers."""
        self._db.execute("PRAGMA user_version")

    @_refused
    def write(self, records: Sequence[tuple[Any, ...]], now: float) -> Written:
        """Insert encoded rows (:func:`encode`) and evict what is too old or too many, in one transaction."""
        with self._transaction():
            inserted = self._insert(records)
            ttl, oldest = self._evict(now, self.rows + inserted)
        self.rows += inserted - ttl - oldest
        return Written(inserted, len(records) - inserted, ttl, oldest)

    def _insert(self, records: Sequence[tuple[Any, ...]], statements: dict[int, str] = _INSERTS) -> int:
        inserted = start = 0
        while (left := len(records) - start) > 0:
            size = min(_INSERT_ROWS, 1 << (left.bit_length() - 1))
            parameters = list(chain.from_iterable(records[start : start + size]))
            inserted += self._db.execute(statements[size], parameters).rowcount
            start += size
        return inserted

    @_refused
    def write_shadow(self, records: Sequence[tuple[Any, ...]]) -> int:
        """Insert a challenger's encoded rows (:func:`encode_shadow`), in one transaction: the rows inserted.

        The first row of an (experiment, request id, row) wins. Eviction is the predictions' writes'.
        """
        with self._transaction():
            return self._insert(records, _SHADOW_INSERTS)

    @_refused
    def evict(self, now: float) -> tuple[int, int]:
        """Evict predictions older than the TTL, then the oldest past ``max_rows``: counts (ttl, max_rows)."""
        with self._transaction():
            ttl, oldest = self._evict(now, self.rows)
        self.rows -= ttl + oldest
        return ttl, oldest

    def _evict(self, now: float, rows: int) -> tuple[int, int]:
        ttl = self._db.execute(_EVICT_TTL, (now - self.ttl_seconds,)).rowcount
        excess = rows - ttl - self.max_rows
        oldest = self._db.execute(_EVICT_OLDEST, (excess,)).rowcount if excess > 0 else 0
        if ttl or oldest:
            # Outcomes go with the predictions they joined; none left, none kept.
            left = self._db.execute(_OLDEST).fetchone()[0]
            cutoff = {"cutoff": math.inf if left is None else left}
            self._db.execute(_EVICT_OUTCOMES, cutoff)
            self._db.execute(_KEEP_UNIT_OUTCOMES, cutoff)
            self._db.execute(_EVICT_SHADOW, cutoff)
        return ttl, oldest

    @_refused
    def attach(self, items: Sequence[object], now: float) -> list[Outcome]:
        """Join labels to stored predictions in one transaction: one :class:`Outcome` per item, in order.

        The first label of a prediction wins, within the batch as across
        batches. ``row`` None joins row 0 of a request that has one stored
        row; for a request with several it is ``invalid``.
        """
        outcomes: list[Outcome | None] = [None] * len(items)
        valid: dict[int, tuple[str, int | None, str, float | None]] = {}
        for i, item in enumerate(items):
            try:
                valid[i] = encode_item(item)
            except ValueError as exc:
                outcomes[i] = Outcome("invalid", reason=str(exc))
        keys = list(valid)  # json_each's key is the position in this list
        with self._transaction():
            matches: dict[int, list[tuple[Any, ...]]] = {}
            if keys:
                batch = orjson.dumps([valid[i][:2] for i in keys]).decode()
                for match in self._db.execute(_MATCH, (batch,)):
                    matches.setdefault(keys[match[0]], []).append(match)
            updates: list[tuple[str, float | None, float, int, int]] = []
            labelled_now: set[int] = set()
            for i, (request_id, row, label, label_ts) in valid.items():
                found = matches.get(i, [])
                if (decided := choose_row(request_id, row, [match[4] for match in found])) is not None:
                    outcomes[i] = decided
                    continue
                _, rowid, had_label, *prediction = found[0]
                if had_label or rowid in labelled_now:
                    outcomes[i] = Outcome("duplicate")
                    continue
                labelled_now.add(rowid)
                self._label_seq += 1
                updates.append((label, label_ts, now, self._label_seq, rowid))
                outcomes[i] = Outcome("joined", labelled((*prediction, label, label_ts, now)))
            self._db.executemany(_LABEL, updates)
        return [outcome for outcome in outcomes if outcome is not None]

    @_refused
    def labelled(self, since: float, model: str | None) -> list[Labelled]:
        """Labelled predictions made at or after ``since``, oldest first."""
        return [labelled(row) for row in self._select(_LABELLED, since, model, _ORDER)]

    @_refused
    def coverage(self, since: float, model: str | None) -> Coverage:
        """Predictions made at or after ``since``, and how many of them are labelled."""
        predictions, labelled_rows = self._select(_COVERAGE, since, model).fetchone()
        return Coverage(predictions, labelled_rows)

    @_refused
    def label_marker(self, since: float, model: str | None) -> tuple[int, int]:
        """(labelled predictions made at or after ``since``, the sum of their label numbers): read from one index."""
        count, total = self._select(_MARKER, since, model).fetchone()
        return count, total

    @_refused
    def estimated(self, since: float, model: str | None) -> dict[str, Estimate]:
        """Per variant, the weighted mean confidence of the predictions made at or after ``since`` that had one."""
        rows = self._select(_ESTIMATED + _WITH_CONFIDENCE, since, model, _BY_VARIANT)
        return {variant: Estimate(weighted / weight, weight, n) for variant, weighted, weight, n in rows if weight > 0}

    @_refused
    def attach_outcomes(
        self, experiment: str, arms: Sequence[str], items: Sequence[object], now: float
    ) -> list[Outcome]:
        """Store an experiment's outcomes that join a prediction of its ``arms``, in one transaction.

        One :class:`Outcome` per item, in order; the first outcome of a key wins, within the batch as across
        batches (:mod:`sidecar.store.experiment`).
        """
        outcomes: list[Outcome | None] = [None] * len(items)
        by_request: dict[int, tuple[str, float, str | None, int | None, str | None, float | None]] = {}
        by_unit: dict[int, tuple[str, float, str | None, int | None, str | None, float | None]] = {}
        for i, item in enumerate(items):
            try:
                encoded = encode_outcome(item)
            except ValueError as exc:
                outcomes[i] = Outcome("invalid", reason=str(exc))
                continue
            (by_request if encoded[4] is None else by_unit)[i] = encoded
        names = orjson.dumps(list(arms)).decode()
        with self._transaction():
            rows: dict[int, OutcomeRow] = {}
            keys = list(by_request)  # json_each's key is the position in this list
            found: dict[int, list[tuple[int, str, str, str | None, float]]] = {}
            if keys:
                batch = orjson.dumps([by_request[i][2:4] for i in keys]).decode()
                for key, *match in self._db.execute(_OUTCOME_REQUESTS, {"batch": batch}):
                    found.setdefault(keys[key], []).append((match[0], match[1], match[2], match[3], match[4]))
            for i, encoded in by_request.items():
                decided = match_request(encoded, found.get(i, []), arms)
                if isinstance(decided, Outcome):
                    outcomes[i] = decided
                else:
                    rows[i] = decided
            units = list(by_unit)
            first: dict[int, tuple[str, str, float]] = {}
            if units:
                batch = orjson.dumps([by_unit[i][4] for i in units]).decode()
                for key, model, variant, _, latest in self._db.execute(_OUTCOME_UNITS, {"batch": batch, "arms": names}):
                    first[units[key]] = (model, variant, latest)
            for i, encoded in by_unit.items():
                decided = match_unit(encoded, first.get(i))
                if isinstance(decided, Outcome):
                    outcomes[i] = decided
                else:
                    rows[i] = decided
            for i in sorted(rows):  # in the batch's order: its first item of a key wins
                row = rows[i]
                values = (row.metric, row.kind, row.key, row.row, row.value, row.timestamp, now, row.model)
                inserted = self._db.execute(
                    _OUTCOME_INSERT, (experiment, *values, row.variant, row.unit, row.exposed_at)
                ).rowcount
                outcomes[i] = Outcome("joined", variant=row.variant) if inserted else Outcome("duplicate")
        return [outcome for outcome in outcomes if outcome is not None]

    @_refused
    def experiment_units(self, arms: Sequence[str], since: float, model: str | None) -> npt.NDArray[np.int64]:
        """Per arm, the analysis units exposed at or after ``since``: (units, requests routed without one)."""
        parameters = self._window(arms, since, model)
        return collect_units(arms, self._db.execute(_EXPERIMENT_UNITS.format(model=self._of(model)), parameters))

    @_refused
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
        # This thread is the file's only writer, so both read the same rows.
        by_segment = self._db.execute(
            _OUTCOME_SUMS.format(units=_UNITS.format(model=of_model), model=of_model), parameters
        ).fetchall()
        by_period = self._db.execute(_PERIOD_SUMS.format(model=of_model), parameters).fetchall()
        return collect_sums(arms, by_segment, by_period)

    @_refused
    def labelled_exposures(
        self, arms: Sequence[str], since: float, model: str | None, period_seconds: float, calendar: bool
    ) -> LabelledExposures:
        """The labelled predictions of the arms at or after ``since``, with their analysis unit, segment and period."""
        parameters = period_parameters(
            self._window(arms, since, model), period_seconds=period_seconds, calendar=calendar
        )
        query = _LABELLED_EXPOSURES.format(model=self._of(model))
        return collect_exposures(arms, self._db.execute(query, parameters))

    @_refused
    def shadow_pairs(self, experiment: str, control: str, since: float, model: str | None) -> ShadowPairs:
        """The challenger's rows of ``experiment`` paired with control's predictions made at or after ``since``."""
        parameters = {"experiment": experiment, "control": control, "since": since, "model": model}
        # This thread is the file's only writer, so both read the same rows.
        control_rows: int = self._db.execute(_CONTROL_ROWS.format(model=self._of(model)), parameters).fetchone()[0]
        of_model = "" if model is None else _OF_PREDICTION_MODEL
        return collect_pairs(control_rows, self._db.execute(_SHADOW_PAIRS.format(model=of_model), parameters))

    @_refused
    def experiment_started(self, name: str, now: float) -> float:
        """When the experiment ``name`` first ran: ``now`` if it never had, else the time recorded then."""
        with self._transaction():
            self._db.execute(_EXPERIMENT_START, (name, now))
            started: float = self._db.execute(_EXPERIMENT_STARTED, (name,)).fetchone()[0]
        return started

    @staticmethod
    def _window(arms: Sequence[str], since: float, model: str | None) -> dict[str, Any]:
        return {"since": since, "arms": orjson.dumps(list(arms)).decode(), "model": model}

    @staticmethod
    def _of(model: str | None) -> str:
        return "" if model is None else _OF_MODEL

    def _select(self, head: str, since: float, model: str | None, tail: str = "") -> sqlite3.Cursor:
        if model is None:
            return self._db.execute(head + tail, (since,))
        return self._db.execute(head + _BY_MODEL + tail, (since, model))

    def close(self) -> None:
        """Close the file; SQLite checkpoints the WAL into it."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        db = self._db
        # IMMEDIATE takes the write lock up front, so a busy file fails here rather than halfway through.
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            # SQLite rolls back by itself on some errors (disk full); a second ROLLBACK would raise.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _prepare(db: sqlite3.Connection, path: Path) -> int:
    """Set the pragmas, create or check the schema, and count the rows."""
    # The first statement reads the header: a file that is not a database fails here.
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        logger.warning("prediction store %s: journal mode %s, not wal (the filesystem may not allow it)", path, mode)
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    columns = tuple(row[1] for row in db.execute("PRAGMA table_info(predictions)"))
    if version == 0 and not columns:
        # A new file gets what the migrations give an old one, indexes included (a test compares the two).
        db.executescript(
            f"BEGIN IMMEDIATE; {_SCHEMA} {_LABELLED_INDEX} {_OUTCOMES} {_EXPERIMENTS} {_SHADOW}"
            f" PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
        )
    elif version in _COLUMNS_AT and columns == _COLUMNS_AT[version]:
        steps = " ".join(_MIGRATIONS[step] for step in range(version + 1, SCHEMA_VERSION + 1))
        db.executescript(f"BEGIN IMMEDIATE; {steps} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        logger.info("prediction store %s: schema migrated from version %d to %d", path, version, SCHEMA_VERSION)
    elif version != SCHEMA_VERSION or columns != _COLUMNS:
        raise StoreError(
            f"the prediction store {path} in SIDECAR_STATE_DIR has schema version {version}, and this sidecar"
            f" reads version {SCHEMA_VERSION}; move the file aside (its predictions and labels are lost to"
            " monitoring) or point SIDECAR_STATE_DIR at another directory"
        )
    rows: int = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
    return rows


def _unusable(path: Path, exc: BaseException) -> StoreError:
    return StoreError(
        f"cannot open the prediction store {path} (SIDECAR_STATE_DIR={path.parent}): {exc}. SIDECAR_STATE_DIR must"
        " be a writable directory; if the file is corrupt, move it aside (its predictions and labels are lost to"
        " monitoring) and restart"
    )


def encode(record: PredictionRecord, segment_features: tuple[str, ...]) -> tuple[Any, ...]:
    """A record as :meth:`Database.write`'s parameters: only the segment features are kept, never the whole dict.

    Pure, so the store encodes on the event loop as records arrive: its buffer
    then holds these few strings, not the feature dicts the records carry.
    """
    features = record.features
    version = record.model_version
    certainty = confidence(record)
    return (
        record.request_id,
        record.row,
        float(record.timestamp),
        record.model_name,
        _NULL if version is None else version,
        record.variant,
        dumps(record.prediction),
        _NULL if record.scores is None else dumps(record.scores),
        record.weight,
        dumps({name: features.get(name) for name in segment_features}) if segment_features else _NULL,
        _NO_CONFIDENCE if certainty is None else certainty,
        _NULL if record.unit is None else record.unit,
        _NULL if record.segment is None else record.segment,
    )


def encoded_bytes(row: tuple[Any, ...]) -> int:
    """The memory an :func:`encode` row holds, estimated: its strings' lengths plus object overhead."""
    # model and variant are the same few strings in every row, shared rather than held.
    request_id, _, _, _, version, _, prediction, scores, _, segments, _, unit, segment = row
    size = _ROW_OVERHEAD + len(request_id) + len(prediction)
    for text in (version, scores, segments, unit, segment):
        if text is not _NULL:
            size += len(text)
    return size


def encode_shadow(record: PredictionRecord, experiment: str) -> tuple[Any, ...]:
    """A challenger's record of a shadow ``experiment`` as :meth:`Database.write_shadow`'s parameters.

    ``record.timestamp`` is control's prediction time, by which the row is evicted.
    """
    certainty = confidence(record)
    return (
        experiment,
        record.request_id,
        record.row,
        float(record.timestamp),
        record.model_name,
        record.variant,
        dumps(record.prediction),
        _NULL if record.scores is None else dumps(record.scores),
        _NO_CONFIDENCE if certainty is None else certainty,
    )


def shadow_bytes(row: tuple[Any, ...]) -> int:
    """The memory an :func:`encode_shadow` row holds, estimated as :func:`encoded_bytes` does."""
    # The experiment, model and variant are the same few strings in every row, shared rather than held.
    _, request_id, _, _, _, _, prediction, scores, _ = row
    return _ROW_OVERHEAD + len(request_id) + len(prediction) + (0 if scores is _NULL else len(scores))
