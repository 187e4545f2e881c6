"""The read-model base: rows and tracking in one transaction, redeliveries change nothing."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import ClassVar

import pytest
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.application import CaseWork
from domain.case import Case
from projections.base import ReadModel, read_model_datastore
from projections.feed import catch_up, log_batches
from tests.conftest import DATABASE_URL
from tests.stories import by, opened

pytestmark = pytest.mark.postgres


class SignalCount(ReadModel):
    """Counts risk signals per case: a read model small enough to check by hand."""

    name = "signal_count"
    tables: ClassVar = ("signal_count",)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.signal_count "
        "(case_id uuid PRIMARY KEY, signals int NOT NULL)",
    )

    @singledispatchmethod
    def process_event(self, event: object, curs: Cursor[DictRow]) -> None:
        """Other events change nothing."""

    @process_event.register
    def _(self, event: Case.Discovered, curs: Cursor[DictRow]) -> None:
        curs.execute(
            self.sql("INSERT INTO {schema}.signal_count VALUES (%s, %s)"),
            (event.originator_id, len(event.signals)),
        )

    @process_event.register
    def _(self, event: Case.SignalAttached, curs: Cursor[DictRow]) -> None:
        curs.execute(
            self.sql("UPDATE {schema}.signal_count SET signals = signals + 1 WHERE case_id = %s"),
            (event.originator_id,),
        )


def counts(model: ReadModel) -> dict[object, int]:
    with model.datastore.transaction(commit=False) as curs:
        curs.execute(model.sql("SELECT case_id, signals FROM {schema}.signal_count"))
        return {row["case_id"]: row["signals"] for row in curs.fetchall()}


def test_catch_up_applies_each_event_once(app: CaseWork, pg_schema: str) -> None:
    model = SignalCount(read_model_datastore(DATABASE_URL, schema=pg_schema))
    model.create_table()
    first, second = opened(app), opened(app)
    app.attach_signal({"case_id": first, "signal": "arrears", "by": by()})
    assert catch_up(model, app) == 3 + 4  # two Discovered, one SignalAttached, four index events
    assert counts(model) == {first: 2, second: 1}
    assert model.position(app.name) == app.recorder.max_notification_id()

    # A redelivered batch (the broker's at-least-once) changes nothing.
    for batch in log_batches(app, batch_size=2):
        assert model.apply(batch, application_name=app.name) == 0
    assert counts(model) == {first: 2, second: 1}
    model.datastore.close()
