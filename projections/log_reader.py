"""Reading the notification log fast for rebuilds: one ordered scan, decoded for read models.

Rows are decoded by projections.decoding (only what read models use; personal data stays
sealed), the same decoder the projector uses for relief.events messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from eventsourcing.application import Application
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from projections.base import Positioned, ReadModel
from projections.decoding import SKIPPED, EventDecoder, handled_events

__all__ = ["SKIPPED", "LogReader", "handled_events"]


class LogReader:
    """Batches of (domain event, notification id) from the log, decoding only wanted topics."""

    def __init__(self, app: Application[Any], models: Iterable[type[ReadModel]]) -> None:
        self.app = app
        self.decoder = EventDecoder(app.mapper, models)

    def batches(
        self, *, after: int = 0, stop: int | None = None, batch_size: int = 10_000
    ) -> Iterator[tuple[list[Positioned], int]]:
        """Batches after a position (up to `stop`), each with how many notifications it spans."""
        recorder = self.app.recorder
        datastore = recorder.datastore  # type: ignore[attr-defined]
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {0}.{1} WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id"
        ).format(Identifier(datastore.schema), Identifier(recorder.events_table_name))  # type: ignore[attr-defined]
        limit = stop if stop is not None else 2**62
        with datastore.get_connection() as conn, conn.transaction():
            cursor = conn.cursor(name="jiuzhu_log_scan", row_factory=tuple_row)
            cursor.itersize = batch_size
            cursor.execute(statement, (after, limit), binary=True)
            while rows := cursor.fetchmany(batch_size):
                yield self.decoder.decode(rows), len(rows)
            cursor.close()
