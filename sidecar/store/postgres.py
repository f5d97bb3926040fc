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
- **Eviction** deletes in batches of :data:`EVICT_BATCH_ROWS`, each its own
  transaction, so no lock is held for long.

Every connection sets ``statement_timeout`` (:data:`STATEMENT_TIMEOUT_SECONDS`;
reads of the labelled window get :data:`READ_TIMEOUT_SECONDS`), so a slow
database cannot hold the writer thread for ever, and server-side TCP
keepalives, so a replica whose node vanished loses its locks in about
:data:`KEEPALIVE_SECONDS` rather than the operating system's two hours.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sidecar.records import PredictionRecord
from sidecar.store.backend import Refused, Unavailable, Written
from sidecar.store.codec import confidence, dumps, labelled
from sidecar.store.schema import migrate
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
    "encoded_bytes",
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
    prediction text, scores text, weight double precision, segments text, confidence double precision
) ON COMMIT DELETE ROWS
"""
_INSERT_COLUMNS = "request_id, row_index, ts, model, version, variant, prediction, scores, weight, segments, confidence"
_COPY = f"COPY incoming ({_INSERT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["text", "int4", "float8", "text", "text", "text", "text", "text", "float8", "text", "float8"]
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
_LABEL = """
UPDATE predictions AS p
SET label = u.label, label_ts = u.label_ts, labelled_at = extract(epoch FROM now())::double precision,
    label_seq = nextval('predictions_label_seq')
FROM unnest(%s::tid[], %s::text[], %s::double precision[]) AS u (id, label, label_ts)
WHERE p.ctid = u.id AND p.labelled_at IS NULL
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
            updates = [(ctid, valid[i][2], valid[i][3]) for i, ctid, _ in targets.values()]
            columns = [list(column) for column in zip(*updates, strict=True)]
            cursor = self._db.execute(_LABEL, columns)
            stamped = {(request_id, row): at for request_id, row, at in cursor}
        for key, (i, _, joined) in targets.items():
            at = stamped.get(key)
            # Locked since the match, so each is labelled; a row missing here was labelled by another first.
            outcomes[i] = Outcome("duplicate") if at is None else Outcome("joined", labelled((*joined, at)))
        return outcomes

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
        self.rows = rows - oldest
        return ttl, oldest

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
    if "\x00" in request_id or (version is not None and "\x00" in version):
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
    )


# CPython's objects around an encoded row's text, as sqlite.encoded_bytes counts them.
_ROW_OVERHEAD = 384


def encoded_bytes(row: tuple[Any, ...]) -> int:
    """The memory an :func:`encode` row holds, estimated: its strings' lengths plus object overhead."""
    request_id, _, _, _, version, _, prediction, scores, _, segments, _ = row
    size = _ROW_OVERHEAD + len(request_id) + len(prediction)
    for text in (version, scores, segments):
        if text is not None:
            size += len(text)
    return size
