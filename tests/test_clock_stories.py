"""Stories of the clock on the real servers: PostgreSQL, NATS, relay and projector running,
the clock moved by hand from March 2023 to November 2024. Read models are read as the
projector fed them through the broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.application import CaseWork
from domain.case import Case
from processes.clock import ControlledClock
from projections.base import read_model_datastore
from projections.deadlines import approver_queue
from tests.clock_stories import CST, clock_on, moment, passed
from tests.conftest import DATABASE_URL
from tests.stories import by, enrolled, opened, pay, verified
from tests.test_pipeline_brokers import caught_up, cleanup, eventually, service
from tests.test_pipeline_end_to_end import unique_options

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

NATS_URL = "nats://127.0.0.1:4222"


def discovered_on(app: CaseWork, day: datetime) -> UUID:
    """A hotline call on a given day."""
    case_id = uuid4()
    app.open_case(
        {"case_id": case_id, "household_id": f"HH-{case_id.hex[:8]}", "region": "610523",
         "channel": "hotline", "by": {"actor": "hotline", "role": "upstream_system",
                                      "reason": "call", "occurred_at": day}}
    )  # fmt: skip
    return case_id


def read(schema: str, table: str, where: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of a read model's table, as the projector left them."""
    datastore = read_model_datastore(DATABASE_URL, schema=schema, pool_size=1)
    try:
        with datastore.transaction(commit=False) as curs:
            curs.execute(f'SELECT * FROM "{schema}".{table} WHERE {where}', args)
            return [dict(row) for row in curs.fetchall()]
    finally:
        datastore.close()


def test_deadline_stories_on_the_real_servers(app: CaseWork, pg_schema: str) -> None:
    missed_visit = opened(app)
    app.assign_verification(
        {"case_id": missed_visit, "assignee": "anren-team", "due_on": date(2023, 3, 10), "by": by()}
    )
    on_notice = verified(app)
    app.publish_notice({"case_id": on_notice, "starts_on": date(2023, 3, 5), "by": by(days=4)})
    one_off = enrolled(app, "temporary_relief", 400000)
    changing = enrolled(app)  # rural dibao, "changing" household, effective 1 April 2023
    national_day = discovered_on(app, datetime(2024, 9, 20, 10, tzinfo=CST))
    now = ControlledClock(moment("2023-03-02"))
    options = unique_options()

    async def story() -> None:
        with clock_on(app, pg_schema, now) as clock:
            tick = lambda: asyncio.to_thread(clock.tick)  # noqa: E731
            async with service(app, pg_schema, NATS_URL, options) as running:
                try:
                    await tick()
                    now.set(moment("2023-03-11", 1))
                    assert await tick() == 1  # the visit due by the 10th
                    now.set(moment("2023-03-12", 1))
                    assert await tick() == 1  # the notice that ended on the 12th
                    assert await tick() == 0
                    # Temporary relief paid once: its enrolment ends, and the case can close.
                    pay(app, one_off, "one-off", "temporary_relief", 400000)
                    closing = by("approver", days=45, reason="relief done")
                    app.close_case({"case_id": one_off, "by": closing})
                    now.set(moment("2023-10-01", 1))
                    await tick()
                    assert [type(e) for e in passed(app, changing)][-1] is Case.ReviewFellDue
                    now.set(moment("2024-11-06", 23))  # weekends only, due since 2 November
                    await tick()
                    kinds = [e.kind for e in passed(app, national_day)]
                    assert kinds == ["decision_near"]
                    now.set(moment("2024-11-07", 0))
                    await tick()
                    assert [e.kind for e in passed(app, national_day)][-1] == "decision_due"
                    await eventually(lambda: caught_up(running, app))
                finally:
                    await cleanup(NATS_URL, options.destination())

    asyncio.run(story())
    [task] = read(pg_schema, "verification_task", "case_id = %s", missed_visit)
    assert task["escalated_at"] == datetime(2023, 3, 11, tzinfo=CST)
    escalations = [e for e in passed(app, missed_visit) if e.kind == "verification_overdue"]
    assert len(escalations) == 1
    queue = read(
        pg_schema, "deadline", "kind = 'notice_ended' AND state = 'passed' AND done_at IS NULL"
    )
    assert [row["case_id"] for row in queue] == [on_notice]
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema, pool_size=1)
    with datastore.transaction(commit=False) as curs:
        assert [r["case_id"] for r in approver_queue(curs, pg_schema)] == [on_notice]
    datastore.close()
    [grant] = read(pg_schema, "programme_roll", "case_id = %s", one_off)
    assert grant["ended_on"] is not None
    assert app.get_case(one_off).status == "closed"
    [review] = read(pg_schema, "deadline", "case_id = %s AND kind = 'review_due'", changing)
    assert (review["state"], review["due_at"]) == ("passed", datetime(2023, 10, 1, tzinfo=CST))
    [decision] = read(pg_schema, "deadline", "case_id = %s AND kind = 'decision_due'", national_day)
    assert decision["due_at"] == datetime(2024, 11, 7, tzinfo=CST)  # end of Wed 6 November
    # Every deadline event exists once.
    causes = Counter(
        e.causation_id for case in (missed_visit, on_notice, one_off, changing, national_day)
        for e in passed(app, case)
    )  # fmt: skip
    assert causes
    assert max(causes.values()) == 1
