"""The clock: deadlines recorded once, on time by an injected clock, never when satisfied."""

from __future__ import annotations

from datetime import date

import pytest

from domain.application import CaseWork
from domain.case import Case
from processes.clock import ControlledClock
from tests.clock_stories import clock_on, moment, passed
from tests.stories import by, opened, verified

pytestmark = pytest.mark.postgres


def assign(app: CaseWork, case_id, due: date) -> None:  # type: ignore[no-untyped-def]
    app.assign_verification(
        {"case_id": case_id, "assignee": "anren-team", "due_on": due, "by": by()}
    )


def test_a_visit_overdue_escalates_once_across_ticks_and_restarts(
    app: CaseWork, pg_schema: str
) -> None:
    case_id = opened(app)
    assign(app, case_id, date(2023, 3, 10))
    now = ControlledClock(moment("2023-03-10", 23))
    with clock_on(app, pg_schema, now) as clock:
        assert clock.tick() == 0  # due by the end of the 10th: not passed yet
        now.move(hours=2)
        assert clock.tick() == 1
        assert clock.tick() == 0
    with clock_on(app, pg_schema, now) as restarted:
        assert restarted.tick() == 0
    [escalation] = passed(app, case_id)
    assert isinstance(escalation, Case.Escalated)
    assert escalation.kind == "verification_overdue"
    assert (escalation.actor, escalation.role) == ("clock", "system")
    assert escalation.escalated_to == "county 610523"


def test_a_visit_recorded_late_but_done_in_time_does_not_escalate(
    app: CaseWork, pg_schema: str
) -> None:
    case_id = opened(app)
    assign(app, case_id, date(2023, 3, 10))
    now = ControlledClock(moment("2023-03-09"))
    with clock_on(app, pg_schema, now) as clock:
        clock.tick()
        now.set(moment("2023-03-13"))
        # The tablet synced on the 13th a visit made on the 8th (days=7 from 1 March).
        app.give_consent({"case_id": case_id, "given_by": "head", "by": by(days=7)})
        app.verify({"case_id": case_id, "verdict": "needs_support", "household_size": 3,
                    "monthly_income_fen": 1000, "by": by(days=7)})  # fmt: skip
        assert clock.tick() == 0
    assert passed(app, case_id) == []


def test_a_crash_after_the_save_does_not_record_the_deadline_again(
    app: CaseWork, pg_schema: str
) -> None:
    case_id = opened(app)
    assign(app, case_id, date(2023, 3, 10))
    now = ControlledClock(moment("2023-03-12"))
    with clock_on(app, pg_schema, now) as clock:
        clock.catch_up()
        assert clock.fire_due(100) == 1  # saved; "killed" before reading its event back
    with clock_on(app, pg_schema, now) as restarted:
        assert restarted.tick() == 0
    assert len(passed(app, case_id)) == 1


def test_a_case_that_moves_between_reading_and_saving_is_decided_again(
    app: CaseWork, pg_schema: str
) -> None:
    case_id = opened(app)
    assign(app, case_id, date(2023, 3, 10))
    now = ControlledClock(moment("2023-03-12"))
    with clock_on(app, pg_schema, now) as clock:
        clock.catch_up()
        # A step the clock has not read: the deadline waits for the next round.
        app.give_consent({"case_id": case_id, "given_by": "head", "by": by(days=9)})
        assert clock.fire_due(100) == 0
        assert clock.stats.deferred == 1
        assert clock.tick() == 1  # the consent settles nothing: the visit is still missing


def test_deadlines_by_kind_over_a_year(app: CaseWork, pg_schema: str) -> None:
    case_id = verified(app)  # discovered 1 March 2023, visited on the 4th
    now = ControlledClock(moment("2023-03-02"))
    with clock_on(app, pg_schema, now) as clock:
        clock.tick()
        now.set(moment("2024-03-01"))
        clock.tick()
    kinds = [(type(e).__name__, e.kind) for e in passed(app, case_id)]
    # No decision a year on: warned when near and at 30 working days, escalated at 45.
    assert kinds == [
        ("DeadlineWarned", "decision_near"),
        ("DeadlineWarned", "decision_due"),
        ("Escalated", "decision_limit"),
    ]


def test_a_failed_round_is_retried_not_fatal(app: CaseWork, pg_schema: str) -> None:
    import asyncio

    case_id = opened(app)
    assign(app, case_id, date(2023, 3, 10))
    now = ControlledClock(moment("2023-03-12"))
    with clock_on(app, pg_schema, now) as clock:
        real_tick, calls = clock.tick, []

        def flaky(stop):  # type: ignore[no-untyped-def]
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("database away")
            return real_tick(stop)

        clock.tick = flaky  # type: ignore[method-assign]

        async def run() -> None:
            stopping = asyncio.Event()
            task = asyncio.create_task(clock.run(stopping, every=0.01))
            while clock.stats.recorded == 0:
                await asyncio.sleep(0.01)
            stopping.set()
            await task

        asyncio.run(asyncio.wait_for(run(), 30))
        assert clock.stats.failures == 1
    assert len(passed(app, case_id)) == 1
