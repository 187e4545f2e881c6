"""Snapshots sealed to the chain: signed with the case's chain hash, checked before use.

A snapshot is a shortcut past the events; a forged one (a total changed in the snapshots
table) would be served and acted on while every event still verifies. Each snapshot is
stored with a seal: the chain position and hash of the version it was taken at and the
hash of its stored bytes, signed with the checkpoint key (which never lives in the
database). A snapshot whose seal does not check out is not used: the case is folded
from its events instead, and `audit verify` reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any
from uuid import UUID

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresDatastore
from psycopg.rows import DictRow

from jiuzhu.audit.signing import Signer, verify_signature
from jiuzhu.audit.tables import AuditTables

__all__ = ["SealedSnapshotRecorder", "SnapshotSeal", "seal_message", "state_hash"]

log = structlog.get_logger("jiuzhu.audit")


def state_hash(topic: str, state: bytes) -> bytes:
    """The hash of a snapshot's stored bytes (topic and state, length-delimited)."""
    digest = sha256(f"{topic}\x1f{len(state)}\x1e".encode())
    digest.update(state)
    return digest.digest()


def seal_message(
    store: str,
    case_id: UUID | str,
    version: int,
    notification_id: int,
    chain_hash: bytes,
    stored_hash: bytes,
) -> bytes:
    """The exact bytes a snapshot's seal signs."""
    return (
        f"jiuzhu-audit-snapshot/v1\n{store}\n{case_id}\n{version}\n{notification_id}\n"
        f"{chain_hash.hex()}\n{stored_hash.hex()}"
    ).encode()


@dataclass(frozen=True)
class SnapshotSeal:
    """What a seal row says about one snapshot."""

    notification_id: int
    chain_hash: bytes
    stored_hash: bytes
    key_id: str
    signature: bytes

    def holds(
        self,
        store: str,
        snapshot: StoredEvent,
        keys: dict[str, Ed25519PublicKey],
    ) -> str | None:
        """None if the seal covers this snapshot under a trusted key, else what is wrong."""
        key = keys.get(self.key_id)
        if key is None:
            return f"sealed with key {self.key_id}, which is not a trusted key"
        message = seal_message(
            store,
            snapshot.originator_id,
            snapshot.originator_version,
            self.notification_id,
            self.chain_hash,
            self.stored_hash,
        )
        if not verify_signature(key, self.signature, message):
            return "the seal's signature is bad (seal altered or forged)"
        if state_hash(snapshot.topic, snapshot.state) != self.stored_hash:
            return "the snapshot's stored bytes differ from the sealed ones (snapshot altered)"
        return None


def seal_from_row(row: Any) -> SnapshotSeal:
    """A seal from a row with its five columns."""
    return SnapshotSeal(
        notification_id=row["notification_id"],
        chain_hash=bytes(row["chain_hash"]),
        stored_hash=bytes(row["stored_hash"]),
        key_id=row["key_id"],
        signature=bytes(row["signature"]),
    )


class SealedSnapshotRecorder(PostgresAggregateRecorder):
    """The library's snapshot recorder, writing a seal with each snapshot and checking it."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str,
        audit: AuditTables,
        signer: Signer | None,
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.audit = audit
        self.signer = signer
        self.trusted = {} if signer is None else {signer.key_id: signer.public_key}
        self.sql_create_statements.extend(audit.seals_ddl())
        self._chain_row = audit.sql(
            "SELECT notification_id, hash FROM {chain}"
            " WHERE originator_id = %s AND originator_version = %s"
        )
        self._insert_seal = audit.sql(
            "INSERT INTO {seals} (originator_id, originator_version, notification_id,"
            " chain_hash, stored_hash, key_id, signature) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        )
        self._select_seals = audit.sql(
            "SELECT originator_version, notification_id, chain_hash, stored_hash, key_id,"
            " signature FROM {seals} WHERE originator_id = %s AND originator_version = ANY(%s)"
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        signer = self.signer
        if signer is None or not stored_events:
            return None  # a snapshot nobody can check would only be a hazard
        with self.datastore.transaction(commit=True) as curs:
            sealed = []
            for snapshot in stored_events:
                curs.execute(self._chain_row, (snapshot.originator_id, snapshot.originator_version))
                chain_row: DictRow | None = curs.fetchone()
                if chain_row is None:
                    continue  # not on the chain: the case is folded from its events
                stored_hash = state_hash(snapshot.topic, snapshot.state)
                message = seal_message(
                    self.audit.store,
                    snapshot.originator_id,
                    snapshot.originator_version,
                    chain_row["notification_id"],
                    bytes(chain_row["hash"]),
                    stored_hash,
                )
                curs.execute(
                    self._insert_seal,
                    (
                        snapshot.originator_id,
                        snapshot.originator_version,
                        chain_row["notification_id"],
                        bytes(chain_row["hash"]),
                        stored_hash,
                        signer.key_id,
                        signer.sign(message),
                    ),
                )
                sealed.append(snapshot)
            if sealed:
                self._insert_stored_events(curs, sealed)
        return None

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        snapshots: Sequence[StoredEvent] = super().select_events(
            originator_id, gt=gt, lte=lte, desc=desc, limit=limit
        )
        if not snapshots:
            return snapshots
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self._select_seals,
                (originator_id, [s.originator_version for s in snapshots]),
                prepare=True,
            )
            seals = {row["originator_version"]: seal_from_row(row) for row in curs.fetchall()}
        trusted = []
        for snapshot in snapshots:
            seal = seals.get(snapshot.originator_version)
            problem = (
                "it has no seal"
                if seal is None
                else seal.holds(self.audit.store, snapshot, self.trusted)
            )
            if problem is None:
                trusted.append(snapshot)
            else:
                log.warning(
                    "snapshot not used: folding the case from its events",
                    case_id=str(originator_id),
                    version=snapshot.originator_version,
                    problem=problem,
                )
        return trusted
