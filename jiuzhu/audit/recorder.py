"""An application recorder that chains every event it stores, in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
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

from jiuzhu.audit.chain import GENESIS, event_hash, running_hash
from jiuzhu.audit.checkpoints import insert_checkpoint
from jiuzhu.audit.signing import Signer
from jiuzhu.audit.tables import AuditTables

__all__ = ["ChainedApplicationRecorder", "ChainedProcessRecorder", "InsertHook"]

# Runs inside the insert transaction after the events and their chain rows are written.
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
        self.hooks = list(hooks)
        self._select_heads = self.audit.sql(
            "(SELECT notification_id, NULL::{id_type} AS originator_id, running_hash AS hash"
            " FROM {chain} ORDER BY notification_id DESC LIMIT 1)"
            " UNION ALL"
            " SELECT h.notification_id, h.originator_id, h.hash"
            " FROM unnest(%s::{id_type}[]) AS o(id) CROSS JOIN LATERAL"
            " (SELECT notification_id, originator_id, hash FROM {chain}"
            "  WHERE originator_id = o.id ORDER BY notification_id DESC LIMIT 1) AS h"
        )
        self._insert_chain = self.audit.sql(
            "INSERT INTO {chain} (notification_id, originator_id, originator_version,"
            " prev_hash, hash, running_hash, correlation_id, causation_id)"
            " SELECT * FROM unnest(%s::bigint[], %s::{id_type}[], %s::bigint[],"
            " %s::bytea[], %s::bytea[], %s::bytea[], %s::text[], %s::text[])"
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        try:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        except _AbortInsert as abort:
            raise abort.error from None

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if ids:
            try:
                self._chain(curs, stored_events, ids)
            except Exception as error:
                raise _AbortInsert(error) from error
        return ids

    def _chain(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], ids: Sequence[int]
    ) -> None:
        # The events table lock is held: the heads read here are the latest committed.
        originators = list({e.originator_id for e in stored_events})
        curs.execute(self._select_heads, (originators,), prepare=True)
        heads: dict[Any, bytes] = {}
        running, last_id = GENESIS, 0
        for row in curs.fetchall():
            if row["originator_id"] is None:
                running, last_id = bytes(row["hash"]), row["notification_id"]
            else:
                heads[row["originator_id"]] = bytes(row["hash"])
        batch_correlation, batch_causation = _batch_provenance(stored_events)
        columns: list[list[Any]] = [[] for _ in range(8)]
        previous_last_id = last_id
        for notification_id, event in sorted(zip(ids, stored_events, strict=True)):
            prev = heads.get(event.originator_id, GENESIS)
            hash_ = event_hash(
                prev, event.originator_id, event.originator_version, event.topic, event.state
            )
            running = running_hash(running, notification_id, hash_)
            heads[event.originator_id] = hash_
            correlation, causation = _provenance(event.state)
            for column, value in zip(
                columns,
                (
                    notification_id,
                    event.originator_id,
                    event.originator_version,
                    prev,
                    hash_,
                    running,
                    correlation or batch_correlation,
                    causation or batch_causation,
                ),
                strict=True,
            ):
                column.append(value)
            last_id = notification_id
        curs.execute(self._insert_chain, columns, prepare=True)
        for hook in self.hooks:
            hook(curs, stored_events)
        every = self.checkpoint_every
        if self.signer is not None and every > 0 and last_id // every > previous_last_id // every:
            insert_checkpoint(curs, self.audit, self.signer, last_id, running, datetime.now(UTC))


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


def _batch_provenance(stored_events: Sequence[StoredEvent]) -> tuple[str | None, str | None]:
    # One save() is one command: events without provenance of their own (the household
    # index, a message receipt) belong to the conversation of the events saved with them.
    for event in stored_events:
        correlation, causation = _provenance(event.state)
        if correlation is not None:
            return correlation, causation
    return None, None


class ChainedApplicationRecorder(_Chaining, PostgresApplicationRecorder):
    """The library's application recorder, with a hash chain written in the same transaction."""


class ChainedProcessRecorder(_Chaining, PostgresProcessRecorder):
    """The library's process recorder (events + tracking), with the hash chain."""
