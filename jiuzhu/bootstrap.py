"""Wiring: the one place where settings become connected applications."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from domain.application import CaseWork

__all__ = ["casework", "eventstore_env"]


def eventstore_env(
    database_url: str, *, schema: str = "public", pool_size: int = 5
) -> dict[str, str]:
    """eventsourcing's PostgreSQL settings for a database URL."""
    params = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        # Waiting for the insert lock beyond this means something is stuck: fail loudly.
        "POSTGRES_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "y",
    }


def casework(database_url: str, *, schema: str = "public", pool_size: int = 5) -> CaseWork:
    """A CaseWork application on a PostgreSQL event store."""
    if schema != "public":
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(schema)))
    return CaseWork(env=eventstore_env(database_url, schema=schema, pool_size=pool_size))
