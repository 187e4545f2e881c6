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
    """Apply the log's events after the ledger's position; the position reached.

    The projector may feed the same ledger meanwhile: its tracking record then wins
    (the insert of ours conflicts, nothing of ours commits) and we read on from there.
    """
    reader = LogReader(app, [PayrollLedger])
    while True:
        position = ledger.position(app.name)
        try:
            for batch, _spanned in reader.batches(after=position, batch_size=batch_size):
                if batch:
                    ledger.apply(batch, application_name=app.name)
        except (IntegrityError, UniqueViolation):
            continue
        return ledger.position(app.name)


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
