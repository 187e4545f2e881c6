"""The audit tables beside an events table: the chain (one row per event) and checkpoints."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.postgres import PostgresRecorder
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.sql import SQL, Composed, Identifier, Literal

__all__ = ["AuditTables", "binary_array"]


@dataclass(frozen=True)
class AuditTables:
    """Names and SQL of `<events>_chain` and `<events>_checkpoints` in a schema."""

    schema: str
    events_table: str
    originator_id_type: str = "uuid"

    def __post_init__(self) -> None:
        for name in (
            self.chain_table,
            self.checkpoints_table,
            self.seals_table,
            self.chain_constraint,
            f"{self.chain_table}_corr_idx",
        ):
            PostgresRecorder.check_identifier_length(name)

    @property
    def chain_table(self) -> str:
        return f"{self.events_table}_chain"

    @property
    def checkpoints_table(self) -> str:
        return f"{self.events_table}_checkpoints"

    @property
    def chain_constraint(self) -> str:
        """The deferred foreign key from each event to its chain record."""
        return f"{self.events_table}_chained"

    @property
    def seals_table(self) -> str:
        """Seals of the snapshots (jiuzhu.audit.snapshots)."""
        return f"{self.events_table}_seals"

    @property
    def snapshots_table(self) -> str:
        """The library's snapshots table beside the events table (casework_snapshots)."""
        return self.events_table.removesuffix("_events") + "_snapshots"

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
            seals=Identifier(self.schema, self.seals_table),
            snapshots=Identifier(self.schema, self.snapshots_table),
            id_type=Identifier(self.originator_id_type),
            fk=Identifier(self.chain_constraint),
            fk_name=Literal(self.chain_constraint),
            events_name=Literal(f'"{self.schema}"."{self.events_table}"'),
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
            # Checkpoints chained to one another (v2); rows signed before have NULLs.
            self.sql(
                "ALTER TABLE {checkpoints} ADD COLUMN IF NOT EXISTS seq bigint,"
                " ADD COLUMN IF NOT EXISTS prev_digest bytea"
            ),
            # No path may store an event without its chain record: checked at commit, so
            # the recorder writes both in one transaction and the library's plain recorder
            # (or any other writer) is refused. NOT VALID: rows stored before stay as
            # they are (verify reports any without a chain record).
            self.sql(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint"
                " WHERE conname = {fk_name} AND conrelid = {events_name}::regclass) THEN"
                " ALTER TABLE {events} ADD CONSTRAINT {fk} FOREIGN KEY (notification_id)"
                " REFERENCES {chain} (notification_id) DEFERRABLE INITIALLY DEFERRED NOT VALID;"
                " END IF; END $$"
            ),
        ]

    def seals_ddl(self) -> list[Composed]:
        """CREATE statement of the snapshot seals (idempotent)."""
        return [
            self.sql(
                "CREATE TABLE IF NOT EXISTS {seals} ("
                " originator_id {id_type} NOT NULL,"
                " originator_version bigint NOT NULL,"
                " notification_id bigint NOT NULL,"
                " chain_hash bytea NOT NULL,"
                " stored_hash bytea NOT NULL,"
                " key_id text NOT NULL,"
                " signature bytea NOT NULL,"
                " PRIMARY KEY (originator_id, originator_version))"
            )
        ]


# -- array parameters -------------------------------------------------------------------
# psycopg dumps a list parameter element by element in Python (~0.4 us each, ~0.25 ms per
# 600-row column); these dumpers write the same binary array (PostgreSQL's array_send
# format) with the loops in C (map, zip, bytes.join, struct). A connection without them
# registered dumps the list subclasses as the plain lists they are.

_INT4 = struct.Struct(">i")
_LEN16 = _INT4.pack(16)


def _array(oid: int, count: int, elements: Iterable[bytes]) -> bytes:
    # One dimension, no NULLs, element type, length, lower bound 1; then the elements.
    return b"".join(chain((struct.pack(">iiiii", 1, 0, oid, count, 1),), elements))


def _sized(items: Sequence[bytes]) -> Iterator[bytes]:
    return chain.from_iterable(zip(map(_INT4.pack, map(len, items)), items, strict=True))


class Int8Array(list[int]):
    """A bigint[] parameter."""


class UUIDArray(list[UUID]):
    """A uuid[] parameter."""


class ByteaArray(list[bytes]):
    """A bytea[] parameter (no NULLs)."""


class _Int8ArrayDumper(Dumper):
    format = Format.BINARY
    oid = postgres.types["int8"].array_oid

    def dump(self, obj: Any) -> bytes:
        elements = struct.pack(f">{'iq' * len(obj)}", *chain.from_iterable(zip(repeat(8), obj)))
        return _array(postgres.types["int8"].oid, len(obj), (elements,))


class _UUIDArrayDumper(Dumper):
    format = Format.BINARY
    oid = postgres.types["uuid"].array_oid

    def dump(self, obj: Any) -> bytes:
        # UUID.bytes is a Python property; UUID.int is a slot and int.to_bytes runs in C.
        raw = map(int.to_bytes, map(attrgetter("int"), obj), repeat(16))
        elements = chain.from_iterable(zip(repeat(_LEN16), raw))
        return _array(postgres.types["uuid"].oid, len(obj), elements)


class _ByteaArrayDumper(Dumper):
    format = Format.BINARY
    oid = postgres.types["bytea"].array_oid

    def dump(self, obj: Any) -> bytes:
        return _array(postgres.types["bytea"].oid, len(obj), _sized(obj))


for _array_type, _dumper in (
    (Int8Array, _Int8ArrayDumper),
    (UUIDArray, _UUIDArrayDumper),
    (ByteaArray, _ByteaArrayDumper),
):
    psycopg.adapters.register_dumper(_array_type, _dumper)


def binary_array(values: Sequence[Any]) -> list[Any]:
    """A `%b` array parameter, fast-dumped when its values are all ints, UUIDs or bytes.

    Anything else (text, NULLs, mixed types) is the plain list psycopg dumps itself.
    """
    if not values:
        return list(values)
    kind = type(values[0])
    if not all(type(v) is kind for v in values):
        return list(values)
    if kind is int:
        if min(values) < -(2**63) or max(values) >= 2**63:
            return list(values)
        return Int8Array(values)
    if kind is UUID:
        return UUIDArray(values)
    if kind is bytes:
        return ByteaArray(values)
    return list(values)  # text and the rest: psycopg's own dumpers are as fast
