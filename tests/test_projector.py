"""The projector's batches: decoded as a rebuild decodes, bad messages dead-lettered alone."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from consumers.event_messages import encode, log_row
from consumers.projector import NatsFeed, Projector
from domain.application import CaseWork
from projections.base import TRANSIENT, apply_together, read_model_datastore
from projections.case_status import CaseStatus
from projections.funnel import Funnel
from tests.conftest import DATABASE_URL
from tests.test_case_status import expected_rows, table_rows, varied_cases

pytestmark = pytest.mark.postgres


class Recorded:
    """A dead-letter place that keeps what it is given."""

    def __init__(self) -> None:
        self.letters: list[tuple[Mapping[str, Any], bytes, str]] = []

    async def __call__(self, headers: Mapping[str, Any], body: bytes, reason: str) -> None:
        self.letters.append((headers, body, reason))


def test_a_message_whose_event_cannot_be_rebuilt_is_dead_lettered_and_the_rest_applied(
    app: CaseWork, pg_schema: str
) -> None:
    varied_cases(app)
    notifications = app.recorder.select_notifications(start=1, limit=10_000)
    messages = [encode(n, prefix="t.events") for n in notifications]
    broken = next(i for i, m in enumerate(messages) if m.headers["type"] == "Case.Paid")
    incoming = [(m.headers, m.body) for m in messages]
    incoming[broken] = (messages[broken].headers, b'{"amount": ')  # cut short in transit
    model = CaseStatus(read_model_datastore(DATABASE_URL, schema=pg_schema))
    model.create_table()
    deadletter = Recorded()
    projector = Projector(app.mapper, [model], application_name=app.name, deadletter=deadletter)

    # Delivered twice and out of order: each event still applies once, in log order.
    asyncio.run(projector.project(incoming[::-1] + incoming))

    # Once: its second delivery in the batch is the same notification.
    ((headers, body, reason),) = deadletter.letters
    assert body == b'{"amount": '
    assert headers == messages[broken].headers
    version = messages[broken].headers["version"]
    assert reason.startswith(f"cannot rebuild domain.case:Case.Paid v{version}: JSONDecodeError")
    assert projector.stats.dead_lettered == 1
    assert model.position(app.name) == notifications[-1].id
    # Only the lost payment is missing from the case's total.
    rows, expected = table_rows(model), expected_rows(app)
    paid_case = notifications[broken].originator_id
    assert {k: v for k, v in rows.items() if k != paid_case} == {
        k: v for k, v in expected.items() if k != paid_case
    }
    assert rows[paid_case]["payments"] == expected[paid_case]["payments"] - 1
    model.datastore.close()


def test_read_models_commit_a_batch_together_or_not_at_all(app: CaseWork, pg_schema: str) -> None:
    varied_cases(app)
    notifications = app.recorder.select_notifications(start=1, limit=10_000)
    incoming = [(m.headers, m.body) for m in (encode(n, prefix="t.events") for n in notifications)]
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema)
    status, funnel = CaseStatus(datastore), Funnel(datastore)
    for model in (status, funnel):
        model.create_table()

    def broken(curs: Any) -> None:
        raise psycopg.OperationalError("the funnel's rows cannot be written: server gone")

    funnel.flush_batch = broken  # type: ignore[method-assign]
    projector = Projector(
        app.mapper, [status, funnel], application_name=app.name, deadletter=Recorded()
    )
    events = projector.decoder.decode([log_row(h, b) for h, b in incoming])
    with pytest.raises(TRANSIENT):  # eventsourcing's OperationalError, wrapping psycopg's
        apply_together(datastore, [status, funnel], events, application_name=app.name)
    # case_status's rows and tracking went back with the funnel's: both still at 0.
    assert status.position(app.name) == funnel.position(app.name) == 0
    assert table_rows(status) == {}

    del funnel.flush_batch
    asyncio.run(projector.project(incoming))
    assert status.position(app.name) == funnel.position(app.name) == notifications[-1].id
    datastore.close()


class Delivered:
    """A JetStream message as the feed sees it: only its stream sequence."""

    def __init__(self, sequence: int) -> None:
        self.metadata = SimpleNamespace(sequence=SimpleNamespace(stream=sequence))


def test_a_nats_batch_is_taken_only_up_to_its_first_gap() -> None:
    # 100-150 lost with a connection while 151 on kept coming: acking up to 155 (AckPolicy.ALL)
    # would ack the lost ones too, and their redelivery would be skipped as applied.
    feed = NatsFeed(None, None, None, None, batch_size=500)  # type: ignore[arg-type]
    feed.expected = 95
    batch: Any = [Delivered(n) for n in (95, 96, 97, 98, 99, 151, 152, 155)]
    assert feed._following(batch) == batch[:5]
    # Redeliveries below the expected sequence are kept (tracking skips them); a gap is not.
    feed.expected = 90
    again: Any = [Delivered(n) for n in (88, 90, 91, 93)]
    assert feed._following(again) == again[:3]
    feed.expected = None  # a fresh feed takes its first message as the start
    assert feed._following(batch[5:]) == batch[5:7]
