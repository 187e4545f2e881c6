"""Per-household data keys wrapped by the master key; destroying one erases data (shredding)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresRecorder
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from domain.household import Household

__all__ = ["ERASED_TOPIC", "DataKeyStore", "KeyGeneration", "NewDataKey", "SaveKeys"]

ERASED_TOPIC = get_topic(Household.PersonalDataErased)


@dataclass(frozen=True)
class KeyGeneration:
    """One data key of a household (a new one starts after an erasure)."""

    household_id: str
    generation: int
    created_at: datetime
    erased_at: datetime | None


@dataclass(frozen=True, eq=False)
class NewDataKey:
    """A key made while sealing one save's events; it is stored with them or not at all."""

    household_id: str
    generation: int
    key: bytes
    wrapped: bytes


class DataKeyStore:
    """The `<app>_data_keys` table: AES-256 keys per household, wrapped with AES-GCM."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        table: str,
        master_key: bytes,
        cache_seconds: float = 5.0,
    ) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes (AES-256)")
        PostgresRecorder.check_identifier_length(table)
        self.datastore = datastore
        self.table = Identifier(datastore.schema, table)
        self._master = AESGCM(master_key)
        # Other processes keep an erased key at most this long: bounded, not zero.
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, int], tuple[float, bytes | None]] = {}
        self._current: dict[str, tuple[float, int, bytes]] = {}

    def _sql(self, statement: str) -> Composed:
        return SQL(statement).format(table=self.table)

    def create_table(self) -> None:
        """Create the key table if missing."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {table} ("
                    " household_id text NOT NULL,"
                    " generation int NOT NULL,"
                    " wrapped_key bytea,"
                    " created_at timestamptz NOT NULL DEFAULT now(),"
                    " erased_at timestamptz,"
                    " PRIMARY KEY (household_id, generation))"
                )
            )

    # -- wrapping -----------------------------------------------------------------------

    @staticmethod
    def _aad(household_id: str, generation: int) -> bytes:
        return f"jiuzhu-data-key/{household_id}/{generation}".encode()

    def _wrap(self, household_id: str, generation: int, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._master.encrypt(nonce, key, self._aad(household_id, generation))

    def _unwrap(self, household_id: str, generation: int, wrapped: bytes) -> bytes:
        return self._master.decrypt(wrapped[:12], wrapped[12:], self._aad(household_id, generation))

    # -- keys ---------------------------------------------------------------------------

    def key_for_writing(self, household_id: str) -> tuple[int, bytes]:
        """The household's live key (generation, key), created on first use."""
        cached = self._current.get(household_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        with self.datastore.transaction(commit=True) as curs:
            # One creator at a time per household, across processes.
            curs.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (household_id,))
            curs.execute(
                self._sql(
                    "SELECT generation, wrapped_key FROM {table} WHERE household_id = %s"
                    " ORDER BY generation DESC LIMIT 1"
                ),
                (household_id,),
            )
            row = curs.fetchone()
            if row is not None and row["wrapped_key"] is not None:
                generation = row["generation"]
                key = self._unwrap(household_id, generation, bytes(row["wrapped_key"]))
            else:
                generation = 1 if row is None else row["generation"] + 1
                key = AESGCM.generate_key(bit_length=256)
                curs.execute(
                    self._sql(
                        "INSERT INTO {table} (household_id, generation, wrapped_key)"
                        " VALUES (%s, %s, %s)"
                    ),
                    (household_id, generation, self._wrap(household_id, generation, key)),
                )
        self._current[household_id] = (time.monotonic() + self.cache_seconds, generation, key)
        return generation, key

    def cached_key(self, household_id: str) -> tuple[int, bytes] | None:
        """The household's live key from this process's cache, if still fresh."""
        cached = self._current.get(household_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        return None

    def _remember(self, household_id: str, generation: int, key: bytes) -> None:
        expires = time.monotonic() + self.cache_seconds
        self._current[household_id] = (expires, generation, key)
        self._cache[(household_id, generation)] = (expires, key)

    def latest(self, household_ids: Sequence[str]) -> dict[str, tuple[int, bytes | None]]:
        """Each household's newest generation and its key (None once destroyed), one query."""
        # One statement on an autocommit connection: one round trip (a transaction is three).
        with self.datastore.cursor() as curs:
            curs.execute(
                self._sql(
                    "SELECT DISTINCT ON (household_id) household_id, generation, wrapped_key"
                    " FROM {table} WHERE household_id = ANY(%b)"
                    " ORDER BY household_id, generation DESC"
                ),
                (list(household_ids),),
                prepare=True,
            )
            rows = curs.fetchall()
        latest: dict[str, tuple[int, bytes | None]] = {}
        for row in rows:
            household_id, generation = row["household_id"], row["generation"]
            key = None
            if row["wrapped_key"] is not None:
                key = self._unwrap(household_id, generation, bytes(row["wrapped_key"]))
                self._remember(household_id, generation, key)
            latest[household_id] = (generation, key)
        return latest

    def new_key(self, household_id: str, generation: int) -> NewDataKey:
        """A fresh key, wrapped, not stored yet (see insert_new_keys)."""
        key = AESGCM.generate_key(bit_length=256)
        return NewDataKey(household_id, generation, key, self._wrap(household_id, generation, key))

    def insert_new_keys(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> None:
        """Recorder hook: store the new keys the events were sealed with, in their transaction.

        A plain INSERT on purpose. Two writers that both found no live key for a household
        made two different keys with the same (household, generation); each sealed its own
        events with its own key. The second to insert hits the primary key, its whole save
        (events, chain, key) rolls back with an IntegrityError, and its ciphertext is never
        stored: what is stored always decrypts with the stored key. The loser's retry reads
        the winner's key (its failed save cached nothing). ON CONFLICT DO NOTHING would let
        it commit events sealed with a key nobody has. (Opening a case also appends to the
        Household aggregate, so such writers already conflict there.) Inserted after the
        events table lock, so writers meet here one at a time, never in a deadlock.
        """
        new: dict[int, NewDataKey] = {}
        for event in stored_events:
            key: NewDataKey | None = getattr(event, "new_key", None)
            if key is not None:
                new[id(key)] = key
        if not new:
            return
        keys = sorted(new.values(), key=lambda k: (k.household_id, k.generation))
        curs.execute(
            self._sql(
                "INSERT INTO {table} (household_id, generation, wrapped_key)"
                " SELECT * FROM unnest(%b::text[], %b::int[], %b::bytea[])"
            ),
            (
                [k.household_id for k in keys],
                [k.generation for k in keys],
                [k.wrapped for k in keys],
            ),
            prepare=True,
        )

    def stored(self, keys: Iterable[NewDataKey]) -> None:
        """Cache keys whose save committed, so the next writes and reads need no query."""
        for key in keys:
            self._remember(key.household_id, key.generation, key.key)

    def key_for_reading(self, household_id: str, generation: int) -> bytes | None:
        """A key generation, or None when it was destroyed (or never existed)."""
        cached = self._cache.get((household_id, generation))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        with self.datastore.cursor() as curs:  # autocommit: one round trip
            curs.execute(
                self._sql(
                    "SELECT wrapped_key FROM {table} WHERE household_id = %s AND generation = %s"
                ),
                (household_id, generation),
            )
            row = curs.fetchone()
        key = None
        if row is not None and row["wrapped_key"] is not None:
            key = self._unwrap(household_id, generation, bytes(row["wrapped_key"]))
        self._cache[(household_id, generation)] = (time.monotonic() + self.cache_seconds, key)
        return key

    def generations(self, household_id: str) -> list[KeyGeneration]:
        """The household's key generations, oldest first (no key material)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql(
                    "SELECT generation, created_at, erased_at FROM {table}"
                    " WHERE household_id = %s ORDER BY generation"
                ),
                (household_id,),
            )
            return [
                KeyGeneration(household_id, r["generation"], r["created_at"], r["erased_at"])
                for r in curs.fetchall()
            ]

    # -- erasure ------------------------------------------------------------------------

    def forget(self, household_id: str) -> None:
        """Drop the household's keys from this process's cache."""
        self._current.pop(household_id, None)
        for cached in [k for k in self._cache if k[0] == household_id]:
            del self._cache[cached]

    def shred(self, curs: Cursor[DictRow], household_id: str) -> None:
        """Destroy every live key of the household in the current transaction."""
        curs.execute(
            self._sql(
                "UPDATE {table} SET wrapped_key = NULL, erased_at = now()"
                " WHERE household_id = %s AND wrapped_key IS NOT NULL"
            ),
            (household_id,),
        )
        self.forget(household_id)

    def shred_on_erasure(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> None:
        """Recorder hook: an erasure event destroys the keys in the same transaction."""
        for event in stored_events:
            if event.topic == ERASED_TOPIC:
                state: dict[str, Any] = orjson.loads(event.state)
                self.shred(curs, str(state["household_id"]))


class SaveKeys:
    """The data keys one save seals with: looked up in one query, new ones made in memory."""

    def __init__(self, store: DataKeyStore) -> None:
        self.store = store
        self._keys: dict[str, tuple[int, bytes, NewDataKey | None]] = {}
        self._latest: dict[str, int] = {}  # households without a live key: last generation
        self.new: list[NewDataKey] = []

    def load(self, household_ids: Iterable[str]) -> None:
        """Look up the live keys of these households (those not cached) together."""
        wanted = []
        for household_id in dict.fromkeys(household_ids):
            if household_id in self._keys or household_id in self._latest:
                continue
            live = self.store.cached_key(household_id)
            if live is not None:
                self._keys[household_id] = (live[0], live[1], None)
            else:
                wanted.append(household_id)
        if not wanted:
            return
        found = self.store.latest(wanted)
        for household_id in wanted:
            generation, key = found.get(household_id, (0, None))
            if key is not None:
                self._keys[household_id] = (generation, key, None)
            else:
                self._latest[household_id] = generation

    def key_for(self, household_id: str) -> tuple[int, bytes, NewDataKey | None]:
        """(generation, key, the new key to store with the events or None)."""
        found = self._keys.get(household_id)
        if found is not None:
            return found
        if household_id not in self._latest:
            self.load([household_id])
            found = self._keys.get(household_id)
            if found is not None:
                return found
        new = self.store.new_key(household_id, self._latest.pop(household_id) + 1)
        self.new.append(new)
        self._keys[household_id] = (new.generation, new.key, new)
        return self._keys[household_id]
