"""Exact search by id-card number without keeping it in plaintext: a keyed blind index.

Each Case.Discovered with an id-card number adds (HMAC-SHA256 of the normalised number,
household) to a table, in the events' own transaction; erasing a household's personal data
removes its rows in the erasure's transaction. The HMAC key is derived from the master key,
so the table alone (or a dump of it) cannot be searched by guessing numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from domain.case import Case
from jiuzhu.privacy.keys import ERASED_TOPIC

__all__ = ["BlindIndex", "normalise_id_card", "rebuild_blind_index"]

_KEY_PURPOSE = b"jiuzhu blind index of id-card numbers, v1"


def normalise_id_card(number: str) -> str:
    """The number as issued: full-width digits made ASCII, spaces and dashes gone, X upper."""
    text = unicodedata.normalize("NFKC", number)
    return "".join(ch for ch in text if not ch.isspace() and ch != "-").upper()


class BlindIndex:
    """Household ids by the HMAC of a member's id-card number (never the number itself)."""

    def __init__(self, datastore: PostgresDatastore, *, table: str, master_key: bytes) -> None:
        self.datastore = datastore
        self.table = Identifier(datastore.schema, table)
        self._key = hmac.new(master_key, _KEY_PURPOSE, hashlib.sha256).digest()
        self._pending = threading.local()  # the entries of the save running on this thread

    def _sql(self, statement: str) -> Composed:
        return SQL(statement).format(table=self.table)

    def create_table(self) -> None:
        """Create the index table if missing."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {table} (digest bytea NOT NULL,"
                    " household_id text NOT NULL, PRIMARY KEY (digest, household_id))"
                )
            )

    def digest(self, id_card: str) -> bytes:
        """The keyed digest of an id-card number (normalised first)."""
        return hmac.new(self._key, normalise_id_card(id_card).encode(), hashlib.sha256).digest()

    @contextmanager
    def indexing(self, events: Iterable[Any]) -> Iterator[None]:
        """While a save runs on this thread: the entries its Discovered events add."""
        entries = [
            (self.digest(e.personal["id_card"]), e.household_id)
            for e in events
            if isinstance(e, Case.Discovered) and (e.personal or {}).get("id_card")
        ]
        self._pending.entries = entries
        try:
            yield
        finally:
            self._pending.entries = []

    def on_insert(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> None:
        """Recorder hook: add this save's entries, drop erased households', in its transaction."""
        self.insert(curs, getattr(self._pending, "entries", []))
        for event in stored_events:
            if event.topic == ERASED_TOPIC:
                state: dict[str, Any] = orjson.loads(event.state)
                curs.execute(
                    self._sql("DELETE FROM {table} WHERE household_id = %s"),
                    (str(state["household_id"]),),
                )

    def insert(self, curs: Cursor[DictRow], entries: Sequence[tuple[bytes, str]]) -> int:
        """Add (digest, household) entries not yet there; how many were new."""
        if not entries:
            return 0
        curs.executemany(
            self._sql(
                "INSERT INTO {table} (digest, household_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
            ),
            entries,
        )
        return max(curs.rowcount, 0)  # psycopg sums the rows of every statement

    def households(self, id_card: str) -> list[str]:
        """The households a member with this id-card number belongs to (exact match)."""
        if not normalise_id_card(id_card):
            return []
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql("SELECT household_id FROM {table} WHERE digest = %s ORDER BY 1"),
                (self.digest(id_card),),
            )
            return [str(row["household_id"]) for row in curs.fetchall()]


def rebuild_blind_index(app: Any, *, batch: int = 1000) -> int:
    """Index the id-card numbers of cases recorded before the index existed; how many added.

    Reads every Case.Discovered from the log (personal values unsealed with their keys):
    erased households read [erased] and stay out. Safe to run again, or beside writers.
    """
    from jiuzhu.privacy.mapper import ERASED, UNREADABLE

    topic = get_topic(Case.Discovered)
    added = 0
    start = 1
    while True:
        notifications = app.recorder.select_notifications(start, batch, topics=[topic])
        if not notifications:
            return added
        events = [app.mapper.to_domain_event(n) for n in notifications]
        entries = [
            (app.blind_index.digest(e.personal["id_card"]), e.household_id)
            for e in events
            if (e.personal or {}).get("id_card") not in (None, "", ERASED, UNREADABLE)
        ]
        with app.datastore.transaction(commit=True) as curs:
            added += app.blind_index.insert(curs, entries)
        start = notifications[-1].id + 1
