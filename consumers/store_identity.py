"""The event store's identity: one random id per store, kept in the store's own schema.

Event ids derive from (case, version), so two stores publishing on one broker (staging and
production, two counties, a database restored from a backup) produce the same ids for
different events. Every relief.events message carries its store's id, and its broker
message id (Nats-Msg-Id) includes it: the broker never drops one store's event as another's
duplicate, and a projector refuses what another store published.

A copy of a database restored to run beside the original keeps the original's identity:
give the copy a new one (new_store_identity, or in SQL `UPDATE store_identity SET
store_id = gen_random_uuid()`) before its relay runs.
"""

from __future__ import annotations

from uuid import uuid4

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

__all__ = ["new_store_identity", "store_identity"]


def _table(datastore: PostgresDatastore) -> Identifier:
    return Identifier(datastore.schema or "public", "store_identity")


def store_identity(datastore: PostgresDatastore) -> str:
    """The store's id (created on first use; every process of the store reads the same)."""
    table = _table(datastore)
    for attempt in (1, 2):
        try:
            with datastore.transaction(commit=True) as curs:
                curs.execute(
                    SQL(
                        "CREATE TABLE IF NOT EXISTS {0} (only_row boolean PRIMARY KEY DEFAULT "
                        "true CHECK (only_row), store_id uuid NOT NULL, "
                        "created_at timestamptz NOT NULL DEFAULT now())"
                    ).format(table)
                )
                curs.execute(
                    SQL("INSERT INTO {0} (store_id) VALUES (%s) ON CONFLICT DO NOTHING").format(
                        table
                    ),
                    (uuid4(),),
                )
                curs.execute(SQL("SELECT store_id FROM {0}").format(table))
                row = curs.fetchone()
            assert row is not None
            return str(row["store_id"])
        except Exception as error:  # two first processes created the table at once
            if attempt == 2 or not isinstance(error.__cause__, psycopg.errors.UniqueViolation):
                raise
    raise AssertionError("unreachable")


def new_store_identity(datastore: PostgresDatastore) -> str:
    """Give the store a new id (a restored copy that will run beside its original)."""
    store_identity(datastore)
    with datastore.transaction(commit=True) as curs:
        curs.execute(SQL("UPDATE {0} SET store_id = %s").format(_table(datastore)), (uuid4(),))
    return store_identity(datastore)
