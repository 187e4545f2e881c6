"""The audit tables beside an events table: the chain (one row per event) and checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from eventsourcing.postgres import PostgresRecorder
from psycopg.sql import SQL, Composed, Identifier

__all__ = ["AuditTables"]


@dataclass(frozen=True)
class AuditTables:
    """Names and SQL of `<events>_chain` and `<events>_checkpoints` in a schema."""

    schema: str
    events_table: str
    originator_id_type: str = "uuid"

    def __post_init__(self) -> None:
        for name in (self.chain_table, self.checkpoints_table, f"{self.chain_table}_corr_idx"):
            PostgresRecorder.check_identifier_length(name)

    @property
    def chain_table(self) -> str:
        return f"{self.events_table}_chain"

    @property
    def checkpoints_table(self) -> str:
        return f"{self.events_table}_checkpoints"

    @property
    def store(self) -> str:
        """The name a checkpoint signature binds to: schema and events table."""
        return f"{self.schema}.{self.events_table}"

    def sql(self, statement: str) -> Composed:
        """A statement with {events}, {chain}, {checkpoints}, {id_type} and {idx_*} bound."""
        return SQL(statement).format(
            events=Identifier(self.schema, self.events_table),
            chain=Identifier(self.schema, self.chain_table),
            checkpoints=Identifier(self.schema, self.checkpoints_table),
            id_type=Identifier(self.originator_id_type),
            idx_case=Identifier(f"{self.chain_table}_case_idx"),
            idx_corr=Identifier(f"{self.chain_table}_corr_idx"),
            idx_cause=Identifier(f"{self.chain_table}_cause_idx"),
        )

    def ddl(self) -> list[Composed]:
        """CREATE statements (idempotent)."""
        return [
            self.sql(
                "CREATE TABLE IF NOT EXISTS {chain} ("
                " notification_id bigint PRIMARY KEY,"
                " originator_id {id_type} NOT NULL,"
                " originator_version bigint NOT NULL,"
                " prev_hash bytea NOT NULL,"
                " hash bytea NOT NULL,"
                " running_hash bytea NOT NULL,"
                " correlation_id text,"
                " causation_id text,"
                " recorded_at timestamptz NOT NULL DEFAULT now())"
            ),
            self.sql(
                "CREATE INDEX IF NOT EXISTS {idx_case} ON {chain} (originator_id, notification_id)"
            ),
            self.sql("CREATE INDEX IF NOT EXISTS {idx_corr} ON {chain} (correlation_id)"),
            self.sql("CREATE INDEX IF NOT EXISTS {idx_cause} ON {chain} (causation_id)"),
            self.sql(
                "CREATE TABLE IF NOT EXISTS {checkpoints} ("
                " checkpoint_id bigserial PRIMARY KEY,"
                " last_notification_id bigint NOT NULL,"
                " running_hash bytea NOT NULL,"
                " signed_at timestamptz NOT NULL,"
                " key_id text NOT NULL,"
                " signature bytea NOT NULL,"
                " published_at timestamptz)"
            ),
        ]
