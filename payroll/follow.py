"""The payroll's view of the log: its ledger caught up to the head before each decision."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresDatastore
from psycopg.errors import UniqueViolation

from domain.errors import PermissionDeniedError
from domain.provenance import Provenance
from domain.roles import may
from projections.log_reader import LogReader
from projections.payroll_ledger import PayrollLedger

__all__ = ["authorise", "catch_up", "payroll_lock"]


def authorise(by: Provenance, command: str) -> None:
    """The actor's role may run this payroll command (domain/roles.py), or refused."""
    if not may(by.role, command):
        raise PermissionDeniedError(by.actor, by.role.value, command)


def catch_up(app: Application[UUID], ledger: PayrollLedger, *, batch_size: int = 10_000) -> int:
    """Fold the log's events after the ledger's position; the notification id read up to.

    The returned position (also kept as `ledger.scanned`) is the log's head when called:
    every event up to it that the payroll needs is in the ledger. (The tracking record
    stops at the last event the ledger handles, which may be earlier.) The projector may
    feed the same ledger meanwhile: its tracking record then wins (our insert conflicts,
    nothing of ours commits) and we read on from its position.
    """
    reader = LogReader(app, [PayrollLedger])
    head = app.recorder.max_notification_id() or 0
    position = ledger.position(app.name)
    while position < head:
        # One batch read in its own short transaction, then applied: no reading
        # transaction stays open (and idle) while the ledger writes.
        stop = min(head, position + batch_size)
        batch = [pair for rows, _ in reader.batches(after=position, stop=stop) for pair in rows]
        try:
            if batch:
                ledger.apply(batch, application_name=app.name)
        except (IntegrityError, UniqueViolation):
            position = ledger.position(app.name)  # the projector was first: from there on
            continue
        position = stop
    ledger.scanned = max(position, head)
    return ledger.scanned


@contextmanager
def payroll_lock(app: Application[UUID], name: str) -> Iterator[None]:
    """One preparer (or settler) of the payroll at a time, across processes.

    Held on a connection of the event store's pool: the ledger's small pool stays free
    for the work done under the lock.
    """
    datastore: PostgresDatastore = app.recorder.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        assert isinstance(conn, psycopg.Connection)
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 12))", (name,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 12))", (name,))
