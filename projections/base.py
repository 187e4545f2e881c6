"""Read models: tables fed event by event, with the tracking record in the same transaction.

One class serves every path: the projector feeds it batches from the broker, replay and
rebuild feed it straight from the notification log. Only the batch's source differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import singledispatchmethod
from typing import Any, ClassVar, NamedTuple, cast
from uuid import UUID

import psycopg
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import InterfaceError, OperationalError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Connection, Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

__all__ = [
    "TRANSIENT",
    "Columns",
    "LogBatch",
    "Parked",
    "Positioned",
    "ReadModel",
    "apply_together",
    "ddl_lock",
    "parked_events",
    "read_model_datastore",
    "read_model_transaction",
]

# A domain event with its notification id (its position in the application's log).
Positioned = tuple[DomainEventProtocol[Any], int]


class Columns(NamedTuple):
    """A batch's events with their classes and cases, as lists side by side."""

    events: list[Any]
    kinds: list[type]
    case_ids: list[UUID | None]
    case_keys: list[int]  # the case ids' integers (hashed in C, unlike UUIDs)

    @classmethod
    def of(cls, events: list[Any]) -> Columns:
        """Columns of some events, each one looked at."""
        case_ids = [getattr(event, "originator_id", None) for event in events]
        keys = [0 if case_id is None else case_id.int for case_id in case_ids]
        return cls(events, list(map(type, events)), case_ids, keys)


class LogBatch(list[Positioned]):
    """A batch read straight from the log: notification ids strictly increasing, no repeats.

    Beside the (event, notification id) pairs it keeps each event's class and case in
    compact lists (Columns), filled by the decoder while each event is fresh in the CPU
    cache: every read model picks its events out of every batch by class and case, and a
    batch of events fills far more than the caches, so each look at an event itself would
    be a cache miss (eight read models looking at every event was a tenth of a rebuild).
    """

    _columns: Columns | None = None

    def columns(self) -> Columns:
        """The batch as columns; worked out again if it was changed as a plain list since."""
        columns = self._columns
        if columns is None or len(columns.events) != len(self):
            columns = self._columns = Columns.of([event for event, _ in self])
        return columns

    def set_columns(self, columns: Columns) -> None:
        """Columns the decoder noted while it built the batch (one entry per pair)."""
        self._columns = columns


# Faults of the database, not of an event: the batch is tried again later, never parked.
TRANSIENT: tuple[type[Exception], ...] = (
    OperationalError,  # eventsourcing's, wrapping psycopg's
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)

# Events a read model could not fold: a finding each, kept beside the read models.
PARKED_DDL = (
    "CREATE TABLE IF NOT EXISTS {schema}.parked_events ("
    "read_model text NOT NULL, application_name text NOT NULL, notification_id bigint NOT NULL,"
    " event_type text NOT NULL, error text NOT NULL, parked_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (read_model, application_name, notification_id))"
)
PARK = (
    "INSERT INTO {schema}.parked_events (read_model, application_name, notification_id,"
    " event_type, error) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


class Parked(NamedTuple):
    """An event a read model could not fold, and why."""

    read_model: str
    notification_id: int
    event_type: str
    error: str


def parked_events(datastore: PostgresDatastore, application_name: str) -> list[Parked]:
    """The events parked by the read models of a schema, in log order."""
    statement = SQL(
        "SELECT read_model, notification_id, event_type, error FROM {0}.parked_events"
        " WHERE application_name = %s ORDER BY notification_id, read_model"
    ).format(Identifier(datastore.schema))
    try:
        with datastore.transaction(commit=False) as curs:
            curs.execute(statement, (application_name,))
            rows = curs.fetchall()
    except Exception:  # no read model was created in this schema yet
        return []
    return [
        Parked(r["read_model"], r["notification_id"], r["event_type"], r["error"]) for r in rows
    ]


def apply_together(
    datastore: PostgresDatastore,
    models: Sequence[ReadModel],
    events: Sequence[Positioned],
    *,
    application_name: str,
) -> int:
    """Apply a batch to read models in one transaction; how many events the most applied.

    If a read model cannot fold an event (a bug, data it never met), the batch is applied
    again event by event, and each event that fails is parked (parked_events) for that
    read model alone while the rest goes on: a follower never halts on one event, and a
    rebuild parks the same events, so replay still equals live. Database faults are raised.
    """
    for careful in (False, True):
        try:
            with read_model_transaction(datastore, models) as curs:
                return max(
                    (
                        model.apply_in(
                            curs, events, application_name=application_name, careful=careful
                        )
                        for model in models
                    ),
                    default=0,
                )
        except TRANSIENT:
            raise
        except Exception:
            if careful:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# Table creation in a schema, one process at a time: processes started at once on a fresh
# database raced in CREATE ... IF NOT EXISTS into UniqueViolation (pg_type, pg_namespace).
DDL_XACT_LOCK = "SELECT pg_advisory_xact_lock(hashtext('jiuzhu-ddl'), hashtext(%s))"


@contextmanager
def ddl_lock(datastore: PostgresDatastore | str, schema: str = "") -> Iterator[None]:
    """Hold the schema's DDL lock (a session advisory lock) while tables are created."""
    if isinstance(datastore, str):
        params: dict[str, Any] = {"conninfo": datastore}
    else:
        kwargs: dict[str, Any] = dict(cast(dict[str, Any], datastore.pool.kwargs or {}))
        kwargs.pop("row_factory", None)
        params, schema = kwargs, datastore.schema
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(DDL_XACT_LOCK.replace("_xact", ""), (schema,))
        yield  # released with the connection


def read_model_datastore(
    database_url: str, *, schema: str, pool_size: int = 2
) -> PostgresDatastore:
    """A connection pool for read models living in a schema (created if missing)."""
    params = conninfo_to_dict(database_url)
    datastore = PostgresDatastore(
        dbname=str(params.get("dbname") or "postgres"),
        host=str(params.get("host") or "127.0.0.1"),
        port=str(params.get("port") or "5432"),
        user=str(params.get("user") or "postgres"),
        password=str(params.get("password") or ""),
        schema=schema,
        pool_size=pool_size,
    )
    with datastore.transaction(commit=True) as curs:
        curs.execute(DDL_XACT_LOCK, (schema,))
        curs.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(schema)))
    return datastore


@contextmanager
def read_model_transaction(
    datastore: PostgresDatastore, models: Sequence[ReadModel]
) -> Iterator[Cursor[DictRow]]:
    """A transaction for some read models' rows and tracking (ReadModel.apply_in)."""
    connection = None
    try:
        with datastore.transaction(commit=True) as curs:
            connection = curs.connection
            # Rows and tracking commit together: a commit lost in a crash is simply redone.
            curs.execute("SET LOCAL synchronous_commit = off")
            yield curs
    except BaseException:
        if connection is not None:
            for model in models:
                model.rolled_back(connection)
        raise


class ReadModel(PostgresTrackingRecorder):
    """A projection with its PostgreSQL tables; subclasses add process_event methods."""

    name: ClassVar[str]
    # CREATE TABLE / INDEX statements; "{schema}" stands for the read model's schema.
    ddl: ClassVar[Sequence[str]] = ()
    # Tables the read model owns, compared row by row by replay and swapped by rebuild.
    tables: ClassVar[Sequence[str]] = ()

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name=f"{self.name}_tracking")
        for statement in (*self.ddl, PARKED_DDL):
            self.sql_create_statements.append(self.sql(statement))
        self._park = self.sql(PARK)
        self.parked = 0  # events parked since start (in committed transactions or not)

    def create_table(self) -> None:
        """Create the tables if missing, one process at a time (ddl_lock)."""
        with ddl_lock(self.datastore):
            super().create_table()

    def sql(self, statement: str) -> Composed:
        """A statement with {schema} bound to this read model's schema."""
        return SQL(statement).format(schema=Identifier(self.datastore.schema))

    def position(self, application_name: str) -> int:
        """The notification id of the last event applied (0 before any)."""
        return self.max_tracking_id(application_name) or 0

    def apply(self, events: Iterable[Positioned], *, application_name: str) -> int:
        """Apply events after the tracked position and track the last, in one transaction.

        Events at or below the position were applied before (a redelivery): they are
        skipped, so a batch delivered twice changes nothing. Returns how many applied.
        """
        return apply_together(
            self.datastore, [self], list(events), application_name=application_name
        )

    def apply_in(
        self,
        curs: Cursor[DictRow],
        events: Iterable[Positioned],
        *,
        application_name: str,
        careful: bool = False,
    ) -> int:
        """As `apply`, inside a transaction of the caller's (which may hold other models).

        careful: event by event, each in a savepoint; one that cannot be folded is parked.
        """
        curs.execute(self.max_tracking_id_statement, (application_name,), prepare=True)
        row = curs.fetchone()
        position = (row["max"] if row else None) or 0
        if careful:
            applied, last = self._fold_each(curs, events, position, application_name)
        else:
            self.begin_batch()
            applied, last = self.process_batch(events, position, curs)
            if applied:
                self.flush_batch(curs)
        if applied:
            self._insert_tracking(curs, Tracking(application_name, last))
        return applied

    def _fold_each(
        self,
        curs: Cursor[DictRow],
        events: Iterable[Positioned],
        position: int,
        application_name: str,
    ) -> tuple[int, int]:
        applied, last = 0, position
        for event, notification_id in events:
            if notification_id <= last:
                continue
            curs.execute("SAVEPOINT fold")
            try:
                self.begin_batch()
                self.process_batch([(event, notification_id)], last, curs)
                self.flush_batch(curs)
            except TRANSIENT:
                raise
            except Exception as error:
                curs.execute("ROLLBACK TO SAVEPOINT fold")
                self.rolled_back(curs.connection)  # what it staged since went with it
                self.begin_batch()
                kind = type(event).__qualname__
                reason = f"{type(error).__name__}: {error}".replace("\x00", "\\0")[:2000]
                curs.execute(
                    self._park, (self.name, application_name, notification_id, kind, reason)
                )
                self.parked += 1
            else:
                curs.execute("RELEASE SAVEPOINT fold")
            applied, last = applied + 1, notification_id
        return applied, last

    def rolled_back(self, connection: Connection[DictRow]) -> None:
        """Hook: a transaction this read model wrote in on a connection was rolled back."""

    def begin_batch(self) -> None:
        """Hook: a batch starts (read models that buffer rows in memory reset here)."""

    def process_batch(
        self, events: Iterable[Positioned], position: int, curs: Cursor[DictRow]
    ) -> tuple[int, int]:
        """Hook: process a batch's events after `position`, in order: (how many, last id).

        The default calls process_event for each new event; a read model that only
        collects events may override it to do that in one pass.
        """
        applied = last = 0
        for event, notification_id in events:
            if notification_id <= position or notification_id <= last:
                continue
            self.process_event(event, curs)
            last = notification_id
            applied += 1
        return applied, last

    def flush_batch(self, curs: Cursor[DictRow]) -> None:
        """Hook: write rows buffered during the batch, before its tracking record.

        Fast read models fold a batch's events in memory in process_event and write each
        touched row once here (executemany / COPY): one statement per event is far slower.
        """

    @singledispatchmethod
    def process_event(self, event: object, curs: Cursor[DictRow]) -> None:
        """Events this read model does not need change nothing."""
