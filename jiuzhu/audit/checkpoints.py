"""Checkpoints: signed running hashes over the whole log, kept in a table and on the broker."""

from __future__ import annotations

from datetime import UTC, datetime

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow

from jiuzhu.audit.chain import GENESIS
from jiuzhu.audit.signing import Checkpoint, Signer, chained_checkpoint_message
from jiuzhu.audit.tables import AuditTables

__all__ = [
    "insert_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "make_checkpoint",
    "mark_published",
    "unpublished_checkpoints",
]


def insert_checkpoint(
    curs: Cursor[DictRow],
    tables: AuditTables,
    signer: Signer,
    last_notification_id: int,
    running: bytes,
    signed_at: datetime,
) -> Checkpoint:
    """Sign and store the next checkpoint, chained to the last one, in the current transaction.

    The caller holds the events table's lock (the recorder's insert, or make_checkpoint):
    two checkpoints are never numbered or chained from the same predecessor.
    """
    curs.execute(tables.sql("SELECT * FROM {checkpoints} ORDER BY checkpoint_id DESC LIMIT 1"))
    row = curs.fetchone()
    previous = None if row is None else _checkpoint(tables, row)
    seq = 1 if previous is None else previous.number + 1
    prev_digest = GENESIS if previous is None else previous.digest()
    signature = signer.sign(
        chained_checkpoint_message(
            tables.store, seq, last_notification_id, running, signed_at, prev_digest
        )
    )
    curs.execute(
        tables.sql(
            "INSERT INTO {checkpoints} (last_notification_id, running_hash, signed_at, key_id,"
            " signature, seq, prev_digest) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " RETURNING checkpoint_id"
        ),
        (last_notification_id, running, signed_at, signer.key_id, signature, seq, prev_digest),
    )
    inserted = curs.fetchone()
    assert inserted is not None
    return Checkpoint(
        checkpoint_id=inserted["checkpoint_id"],
        store=tables.store,
        last_notification_id=last_notification_id,
        running_hash=running,
        signed_at=signed_at,
        key_id=signer.key_id,
        signature=signature,
        seq=seq,
        prev_digest=prev_digest,
    )


def _checkpoint(tables: AuditTables, row: DictRow) -> Checkpoint:
    return Checkpoint(
        checkpoint_id=row["checkpoint_id"],
        store=tables.store,
        last_notification_id=row["last_notification_id"],
        running_hash=bytes(row["running_hash"]),
        signed_at=row["signed_at"],
        key_id=row["key_id"],
        signature=bytes(row["signature"]),
        seq=row["seq"],
        prev_digest=None if row["prev_digest"] is None else bytes(row["prev_digest"]),
    )


def list_checkpoints(datastore: PostgresDatastore, tables: AuditTables) -> list[Checkpoint]:
    """Every checkpoint, oldest first."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(tables.sql("SELECT * FROM {checkpoints} ORDER BY checkpoint_id"))
        return [_checkpoint(tables, row) for row in curs.fetchall()]


def latest_checkpoint(datastore: PostgresDatastore, tables: AuditTables) -> Checkpoint | None:
    """The newest checkpoint, if any."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(tables.sql("SELECT * FROM {checkpoints} ORDER BY checkpoint_id DESC LIMIT 1"))
        row = curs.fetchone()
        return None if row is None else _checkpoint(tables, row)


def make_checkpoint(
    datastore: PostgresDatastore, tables: AuditTables, signer: Signer
) -> Checkpoint | None:
    """Sign the log as it stands now; None if it is empty or already covered."""
    with datastore.transaction(commit=True) as curs:
        # The recorder's lock: no insert (which may sign a checkpoint itself) in between.
        curs.execute(tables.sql("LOCK TABLE {events} IN EXCLUSIVE MODE"))
        curs.execute(
            tables.sql(
                "SELECT notification_id, running_hash FROM {chain}"
                " ORDER BY notification_id DESC LIMIT 1"
            )
        )
        head = curs.fetchone()
        if head is None:
            return None
        curs.execute(tables.sql("SELECT max(last_notification_id) AS covered FROM {checkpoints}"))
        covered = curs.fetchone()
        if covered is not None and (covered["covered"] or 0) >= head["notification_id"]:
            return None
        return insert_checkpoint(
            curs,
            tables,
            signer,
            head["notification_id"],
            bytes(head["running_hash"]),
            datetime.now(UTC),
        )


def unpublished_checkpoints(datastore: PostgresDatastore, tables: AuditTables) -> list[Checkpoint]:
    """Checkpoints not yet published on the broker, oldest first."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            tables.sql(
                "SELECT * FROM {checkpoints} WHERE published_at IS NULL ORDER BY checkpoint_id"
            )
        )
        return [_checkpoint(tables, row) for row in curs.fetchall()]


def mark_published(datastore: PostgresDatastore, tables: AuditTables, ids: list[int]) -> None:
    """Record that checkpoints reached the broker."""
    with datastore.transaction(commit=True) as curs:
        curs.execute(
            tables.sql(
                "UPDATE {checkpoints} SET published_at = now() WHERE checkpoint_id = ANY(%s)"
            ),
            (ids,),
        )
