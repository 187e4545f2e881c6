"""Wiring: the one place where settings become connected applications."""

from __future__ import annotations

from dataclasses import replace

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from domain.application import CaseWork
from jiuzhu.settings import Settings
from projections.base import ddl_lock

__all__ = ["MissingKeysError", "casework", "check_keys", "eventstore_env"]


class MissingKeysError(ValueError):
    """A database of record with no keys configured: generating them would lose them."""


def check_keys(settings: Settings, *, embedded: bool) -> None:
    """Refuse keys generated in the data directory unless the database is the embedded one.

    A master key on the server's disk dies with the disk, and every household's personal
    data with it; a signing key beside the database it vouches for proves little.
    """
    if embedded or settings.allow_generated_keys:
        return
    missing = [
        name
        for name, value in (
            ("JIUZHU_MASTER_KEY", settings.master_key),
            ("JIUZHU_SIGNING_KEY_FILE", settings.signing_key_file),
        )
        if value is None
    ]
    if missing:
        raise MissingKeysError(
            f"{' and '.join(missing)} must be set for a database of record (JIUZHU_DATABASE_URL):"
            " keys generated in the data directory are lost with it. Keep the master key in a"
            " secret store and the signing key outside the database's server; for tests and"
            " demos only, JIUZHU_ALLOW_GENERATED_KEYS=1"
        )


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
        # A pool connection not had in this long means the database is away: fail, retry
        # later, say "degraded" (the library's 30 s kept an outage hidden that long).
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "CREATE_TABLE": "y",
    }


def casework(
    database_url: str,
    *,
    schema: str = "public",
    pool_size: int = 5,
    settings: Settings | None = None,
    embedded: bool = False,
) -> CaseWork:
    """A CaseWork application on a PostgreSQL event store, with the audit trail wired in.

    Every event is hash-chained in its own transaction and personal data is sealed per
    household (jiuzhu.audit, jiuzhu.privacy); keys come from settings (JIUZHU_* variables
    when none are given). Only with the embedded database (or JIUZHU_ALLOW_GENERATED_KEYS)
    may they be generated in <data_dir>/keys on first use: MissingKeysError otherwise.
    This is the one way to build CaseWork: the event store refuses events without their
    chain records (see jiuzhu.audit.tables), so the library's plain recorder cannot write.
    """
    from jiuzhu.audit.casework import AuditedCaseWork  # the audit trail imports this module
    from jiuzhu.audit.signing import signer_from_settings
    from jiuzhu.privacy.secrets import master_key_from_settings

    settings = settings if settings is not None else Settings()
    check_keys(settings, embedded=embedded)
    # Tables are created one process at a time: see projections.base.ddl_lock.
    with ddl_lock(database_url, schema):
        if schema != "public":
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(schema)))
        app = AuditedCaseWork(
            env=eventstore_env(database_url, schema=schema, pool_size=pool_size),
            master_key=master_key_from_settings(settings),
            signer=signer_from_settings(settings),
            checkpoint_every=settings.checkpoint_every,
            checkpoint_seconds=settings.checkpoint_seconds,
            key_cache_seconds=settings.key_cache_seconds,
        )
    if app.policy.four_eyes != settings.four_eyes:
        app.policy = replace(app.policy, four_eyes=settings.four_eyes)
    return app
