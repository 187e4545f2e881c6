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
    "checkpoint_if_due",
    "insert_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "make_checkpoint",
    "mark_published",
    "sign_if_stale",
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
    return _insert_after(
        curs, tables, signer, last_notification_id, running, signed_at, _last(curs, tables)
    )


def _last(curs: Cursor[DictRow], tables: AuditTables) -> Checkpoint | None:
    curs.execute(tables.sql("SELECT * FROM {checkpoints} ORDER BY checkpoint_id DESC LIMIT 1"))
    row = curs.fetchone()
    return None if row is None else _checkpoint(tables, row)


def checkpoint_if_due(
    curs: Cursor[DictRow],
    tables: AuditTables,
    signer: Signer,
    last_notification_id: int,
    running: bytes,
    now: datetime,
    *,
    count_due: bool,
    interval: float,
) -> datetime | None:
    """Sign if the count says so, or the last checkpoint is `interval` seconds old.

    Under the events table's lock (the recorder's insert). Returns when the store's
    newest checkpoint was signed (now, if this one), so the caller knows when to ask again.
    """
    previous = _last(curs, tables)
    if previous is not None and previous.last_notification_id >= last_notification_id:
        return previous.signed_at
    age = None if previous is None else (now - previous.signed_at).total_seconds()
    if count_due or (interval > 0 and (age is None or age >= interval)):
        _insert_after(curs, tables, signer, last_notification_id, running, now, previous)
        return now
    return None if previous is None else previous.signed_at


def _insert_after(
    curs: Cursor[DictRow],
    tables: AuditTables,
    signer: Signer,
    last_notification_id: int,
    running: bytes,
    signed_at: datetime,
    previous: Checkpoint | None,
) -> Checkpoint:
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


def sign_if_stale(
    datastore: PostgresDatastore,
    tables: AuditTables,
    signer: Signer,
    interval: float,
    now: datetime | None = None,
) -> Checkpoint | None:
    """Sign the log's tail if no checkpoint covers it and the last is `interval` s old.

    The recorder signs while events arrive; this covers the last ones when they stop
    (the relay's checkpoint courier calls it every few seconds).
    """
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            tables.sql(
                "SELECT (SELECT max(notification_id) FROM {chain}) AS head,"
                " (SELECT max(last_notification_id) FROM {checkpoints}) AS covered,"
                " (SELECT max(signed_at) FROM {checkpoints}) AS signed_at"
            )
        )
        row = curs.fetchone()
    if row is None or row["head"] is None or (row["covered"] or 0) >= row["head"]:
        return None
    signed_at = row["signed_at"]
    now = now or datetime.now(UTC)
    if signed_at is not None and (now - signed_at).total_seconds() < interval:
        return None
    return make_checkpoint(datastore, tables, signer)


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
