"""An application recorder that chains every event it stores, in the same transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
)
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from jiuzhu.audit.chain import GENESIS, chain_events
from jiuzhu.audit.checkpoints import checkpoint_if_due
from jiuzhu.audit.signing import Signer
from jiuzhu.audit.tables import AuditTables, binary_array

__all__ = ["ChainedApplicationRecorder", "ChainedProcessRecorder", "InsertHook"]

# Runs inside the insert transaction: `before_insert` hooks after the events table lock and
# before the events; `hooks` after the events and their chain rows are written.
InsertHook = Callable[[Cursor[DictRow], Sequence[StoredEvent]], None]

_CORRELATION = b'"correlation_id"'


class _AbortInsert(BaseException):
    """Carries an error past the library's `except Exception` so the transaction rolls back.

    The library catches errors raised after the INSERT, leaves its transaction block
    normally and re-raises; a chain failure there must not let events commit unchained.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


if TYPE_CHECKING:
    _Base = PostgresApplicationRecorder
else:
    _Base = object


class _Chaining(_Base):
    """Writes `<events>_chain` rows (and due checkpoints) with each batch of events."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        signer: Signer | None = None,
        checkpoint_every: int = 0,
        checkpoint_seconds: float = 0.0,
        clock: Callable[[], datetime] | None = None,
        before_insert: Sequence[InsertHook] = (),
        hooks: Sequence[InsertHook] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, **kwargs)
        self.audit = AuditTables(
            datastore.schema, self.events_table_name, datastore.originator_id_type
        )
        self.sql_create_statements.extend(self.audit.ddl())
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.clock = clock or _utc_now
        # When this process next looks at the last checkpoint's age (None: at the next insert).
        self._next_time_check: datetime | None = None
        self.before_insert = list(before_insert)
        self.hooks = list(hooks)
        # The library's statement with the rows sent as four binary arrays, not one text
        # array of its composite type: psycopg would quote every field and bytea in Python
        # and the server parse it back (~3x the insert), and even a binary composite array
        # is dumped row by row in Python (tables.binary_array). Ids come back in input
        # order, as the library expects.
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[])"
            " RETURNING notification_id"
        ).format(
            schema=Identifier(datastore.schema),
            table=Identifier(self.events_table_name),
            id_type=Identifier(datastore.originator_id_type),
        )
        # The heads query of the insert in progress on this thread, read after the insert.
        self._heads = threading.local()
        self._select_heads = self.audit.sql(
            "(SELECT notification_id, NULL::{id_type} AS originator_id, running_hash AS hash"
            " FROM {chain} ORDER BY notification_id DESC LIMIT 1)"
            " UNION ALL"
            " SELECT h.notification_id, h.originator_id, h.hash"
            " FROM unnest(%b::{id_type}[]) AS o(id) CROSS JOIN LATERAL"
            " (SELECT notification_id, originator_id, hash FROM {chain}"
            "  WHERE originator_id = o.id ORDER BY notification_id DESC LIMIT 1) AS h"
        )
        self._insert_chain = self.audit.sql(
            "INSERT INTO {chain} (notification_id, originator_id, originator_version,"
            " prev_hash, hash, running_hash, correlation_id, causation_id)"
            " SELECT * FROM unnest(%b::bigint[], %b::{id_type}[], %b::bigint[],"
            " %b::bytea[], %b::bytea[], %b::bytea[], %b::text[], %b::text[])"
        )

    def create_table(self) -> None:
        # The service's processes start together (docker-compose.yml) and each creates the
        # tables: the library's CREATE OR REPLACE FUNCTION run at once in two sessions fails
        # with "tuple concurrently updated". One creator at a time per events table.
        key = f"{self.datastore.schema}.{self.events_table_name}"
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        try:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        except _AbortInsert as abort:
            raise abort.error from None
        finally:
            self._heads.cursor = None  # a failed insert never got to read its heads

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The library's order (lock, notify, insert), with the before-insert hooks after the
        # lock and the chain heads queried in the same pipeline: the chain table has none of
        # these events yet, and the lock keeps the heads current until commit.
        self._lock_table(curs)
        self._notify_channel(curs)
        for hook in self.before_insert:
            hook(curs, stored_events)
        originator_ids = [e.originator_id for e in stored_events]
        curs.execute(
            self.insert_events_statement,
            (
                binary_array(originator_ids),
                binary_array([e.originator_version for e in stored_events]),
                [e.topic for e in stored_events],
                binary_array([e.state for e in stored_events]),
            ),
            prepare=True,
        )
        heads = curs.connection.cursor()
        heads.execute(self._select_heads, (binary_array(list(set(originator_ids))),), prepare=True)
        self._heads.cursor = heads

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        heads: Cursor[DictRow] | None = getattr(self._heads, "cursor", None)
        self._heads.cursor = None
        try:
            ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
            if ids:
                try:
                    if heads is None:
                        raise RuntimeError("the chain heads were not queried with the insert")
                    self._chain(curs, heads, stored_events, ids)
                except Exception as error:
                    raise _AbortInsert(error) from error
        finally:
            if heads is not None:
                heads.close()
        return ids

    def _chain(
        self,
        curs: Cursor[DictRow],
        heads_cursor: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        ids: Sequence[int],
    ) -> None:
        heads: dict[Any, bytes] = {}
        running, last_id = GENESIS, 0
        for row in heads_cursor.fetchall():
            if row["originator_id"] is None:
                running, last_id = bytes(row["hash"]), row["notification_id"]
            else:
                heads[row["originator_id"]] = bytes(row["hash"])
        # One save() is one command: events without provenance of their own (the household
        # index, a message receipt) belong to the conversation of the events saved with them.
        provenance = [_carried_provenance(e) for e in stored_events]
        batch_correlation, batch_causation = next(
            (p for p in provenance if p[0] is not None), (None, None)
        )
        ordered = sorted(zip(ids, stored_events, provenance, strict=True), key=_first)
        hashes = list(
            chain_events(
                heads,
                running,
                (
                    (i, e.originator_id, e.originator_version, e.topic, e.state)
                    for i, e, _ in ordered
                ),
            )
        )
        previous_last_id, last_id = last_id, ordered[-1][0]
        running = hashes[-1][2]
        curs.execute(
            self._insert_chain,
            (
                binary_array([i for i, _, _ in ordered]),
                binary_array([e.originator_id for _, e, _ in ordered]),
                binary_array([e.originator_version for _, e, _ in ordered]),
                binary_array([h[0] for h in hashes]),
                binary_array([h[1] for h in hashes]),
                binary_array([h[2] for h in hashes]),
                [p[0] or batch_correlation for _, _, p in ordered],
                [p[1] or batch_causation for _, _, p in ordered],
            ),
            prepare=True,
        )
        for hook in self.hooks:
            hook(curs, stored_events)
        self._sign_if_due(curs, previous_last_id, last_id, running)

    def _sign_if_due(
        self, curs: Cursor[DictRow], previous_last_id: int, last_id: int, running: bytes
    ) -> None:
        """Every `checkpoint_every` events, and at most every `checkpoint_seconds` seconds."""
        if self.signer is None:
            return
        every, interval = self.checkpoint_every, self.checkpoint_seconds
        count_due = every > 0 and last_id // every > previous_last_id // every
        now = self.clock()
        next_check = self._next_time_check
        time_maybe = interval > 0 and (next_check is None or now >= next_check)
        if not (count_due or time_maybe):
            return
        newest = checkpoint_if_due(
            curs, self.audit, self.signer, last_id, running, now,
            count_due=count_due, interval=interval,
        )  # fmt: skip
        # Another process may have signed meanwhile: ask again when that one is due.
        self._next_time_check = None if newest is None else newest + timedelta(seconds=interval)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _first(item: tuple[int, Any, Any]) -> int:
    return item[0]


_UNKNOWN = object()


def _carried_provenance(event: StoredEvent) -> tuple[str | None, str | None]:
    """The ids the mapper carried with the event (jiuzhu.privacy.mapper.MappedEvent), if any."""
    correlation: Any = getattr(event, "correlation_id", _UNKNOWN)
    if correlation is _UNKNOWN:
        return _provenance(event.state)
    causation: Any = getattr(event, "causation_id", None)
    return correlation, causation


def _provenance(state: bytes) -> tuple[str | None, str | None]:
    """The event's correlation and causation ids, if its state is JSON that has them."""
    if _CORRELATION not in state:
        return None, None
    try:
        data = orjson.loads(state)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    correlation, causation = data.get("correlation_id"), data.get("causation_id")
    return (
        correlation if isinstance(correlation, str) else None,
        causation if isinstance(causation, str) else None,
    )


class ChainedApplicationRecorder(_Chaining, PostgresApplicationRecorder):
    """The library's application recorder, with a hash chain written in the same transaction."""


class ChainedProcessRecorder(_Chaining, PostgresProcessRecorder):
    """The library's process recorder (events + tracking), with the hash chain."""
