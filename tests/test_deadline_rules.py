"""Deadlines computed from a case's events: when each falls due and what settles it."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest

from domain.application import CaseWork
from domain.case import Case
from domain.deadlines import PENDING, DeadlineBook, DeadlineKind, Due
from domain.errors import NotEnrolledError, PermissionDeniedError
from domain.provenance import Provenance
from domain.roles import Role
from domain.values import Programme, Verdict
from tests.stories import by, enrolled, opened, pay

CST = timezone(timedelta(hours=8))
BOOK = DeadlineBook()


def at(day: date, role: Role = Role.CASEWORKER) -> Provenance:
    return Provenance(
        actor="w",
        role=role,
        reason="r",
        occurred_at=datetime.combine(day, datetime.min.time(), CST),
    )


def fold(case: Case, rows: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    rows = {} if rows is None else rows
    for event in case.collect_events():
        BOOK.evolve(rows, case.id, event)
    return rows


def discovered(day: date) -> Case:
    return Case.discover(
        case_id=uuid4(),
        household_id="HH-1",
        region="610523",
        channel="hotline",
        signals=[],
        household_size=3,
        personal={},
        by=at(day, Role.UPSTREAM_SYSTEM),
    )


def test_decision_deadline_is_counted_on_the_official_calendar() -> None:
    rows = fold(discovered(date(2024, 9, 20)))  # National Day week ahead
    due = rows[DeadlineKind.DECISION_DUE.value]
    # The 30th working day is Wed 6 November (not Fri 1 November): it passes when it ends.
    assert due["due_at"] == datetime(2024, 11, 7, tzinfo=CST)
    assert rows[DeadlineKind.DECISION_LIMIT.value]["due_at"] == datetime(2024, 11, 28, tzinfo=CST)
    assert rows[DeadlineKind.DECISION_NEAR.value]["due_at"] < due["due_at"]
    assert "official calendar" in due["basis"]


def test_visit_done_late_still_settles_the_escalation_when_recorded_before_the_clock() -> None:
    case = discovered(date(2023, 3, 1))
    case.assign_verification("anren-team", date(2023, 3, 10), by=at(date(2023, 3, 1)))
    rows = fold(case)
    assert rows["verification_overdue"]["state"] == PENDING
    case.give_consent("head", by=at(date(2023, 3, 9)))
    # Recorded on the 12th, but it happened on the 9th: the visit was in time.
    case.verify(Verdict.NEEDS_SUPPORT, 3, 1000, {}, by=at(date(2023, 3, 9)))
    rows = fold(case, rows)
    assert rows["verification_overdue"]["state"] == "done"
    assert rows["verification_overdue"]["done_at"] <= rows["verification_overdue"]["due_at"]


def test_objection_cancels_the_notice_and_a_new_notice_opens_it_again() -> None:
    case = discovered(date(2023, 3, 1))
    case.give_consent("head", by=at(date(2023, 3, 2)))
    case.verify(Verdict.NEEDS_SUPPORT, 3, 1000, {}, by=at(date(2023, 3, 3)))
    case.publish_notice(date(2023, 3, 5), 7, by=at(date(2023, 3, 4)))
    rows = fold(case)
    assert rows["notice_ended"]["due_at"] == datetime(2023, 3, 12, tzinfo=CST)
    case.raise_objection("neighbour", by=at(date(2023, 3, 6)))
    assert fold(case, rows)["notice_ended"]["state"] == "cancelled"
    case.publish_notice(date(2023, 3, 20), 7, by=at(date(2023, 3, 19)))
    assert fold(case, rows)["notice_ended"]["state"] == PENDING


def test_changing_household_review_falls_due_after_six_months_and_escalates_after_grace() -> None:
    case = discovered(date(2023, 3, 1))
    case.give_consent("head", by=at(date(2023, 3, 2)))
    case.verify(Verdict.NEEDS_SUPPORT, 3, 1000, {}, by=at(date(2023, 3, 3)))
    case.publish_notice(date(2023, 3, 5), 7, by=at(date(2023, 3, 4)))
    case.enrol(
        Programme.RURAL_DIBAO,
        50000,
        "changing",
        date(2023, 4, 1),
        by=at(date(2023, 3, 20), Role.APPROVER),
    )
    rows = fold(case)
    assert rows["review_due:rural_dibao"]["due_at"] == datetime(2023, 10, 1, tzinfo=CST)
    assert rows["review_overdue:rural_dibao"]["due_at"] == datetime(2023, 10, 31, tzinfo=CST)
    assert all(
        rows[k.value]["state"] == "done"
        for k in (DeadlineKind.DECISION_DUE, DeadlineKind.DECISION_LIMIT)
    )
    case.review(Programme.RURAL_DIBAO, "continue", by=at(date(2023, 9, 25)))
    rows = fold(case, rows)
    assert rows["review_due:rural_dibao"]["due_at"] == datetime(2024, 3, 25, tzinfo=CST)
    assert rows["review_due:rural_dibao"]["state"] == PENDING


def test_closing_the_case_cancels_what_is_pending() -> None:
    case = discovered(date(2023, 3, 1))
    case.close(by=at(date(2023, 3, 2), Role.APPROVER))
    assert {row["state"] for row in fold(case).values()} == {"cancelled"}


def test_one_off_grant_enrolment_ends_on_its_payment_and_the_case_can_close() -> None:
    case = discovered(date(2023, 3, 1))
    case.give_consent("head", by=at(date(2023, 3, 2)))
    case.verify(Verdict.NEEDS_SUPPORT, 3, 1000, {}, by=at(date(2023, 3, 3)))
    case.enrol(
        Programme.TEMPORARY_RELIEF,
        400000,
        "",
        date(2023, 3, 10),
        by=at(date(2023, 3, 10), Role.APPROVER),
    )
    assert case.active_programmes == ["temporary_relief"]
    case.pay(
        Programme.TEMPORARY_RELIEF, "one-off", 400000, "P1", by=at(date(2023, 3, 11), Role.APPROVER)
    )
    assert case.active_programmes == []
    assert case.enrolments["temporary_relief"]["ended_on"] == date(2023, 3, 11)
    with pytest.raises(NotEnrolledError):
        case.exit_programme(
            Programme.TEMPORARY_RELIEF, date(2023, 3, 12), by=at(date(2023, 3, 12), Role.APPROVER)
        )
    case.close(by=at(date(2023, 3, 12), Role.APPROVER))
    assert case.status == "closed"


@pytest.mark.postgres
def test_the_clock_records_a_deadline_as_system_with_the_rule_and_the_deadline_as_cause(
    app: CaseWork,
) -> None:
    case_id = opened(app)
    case = app.get_case(case_id)
    due = Due(
        case_id,
        "decision_limit",
        DeadlineKind.DECISION_LIMIT,
        datetime(2023, 5, 6, tzinfo=CST),
        "610523",
    )
    app.record_deadlines([(due, case.version + 1)])
    event = app.history(case_id)[-1]
    assert isinstance(event, Case.Escalated)
    assert (event.actor, event.role, event.escalated_to) == ("clock", "system", "county 610523")
    assert "decision-within-working-days" in event.reason
    assert event.causation_id == f"deadline:{case_id}:decision_limit@2023-05-06T00:00:00+08:00"
    assert event.occurred_at == due.due_at
    assert app.get_case(case_id).deadlines_passed
    with pytest.raises(PermissionDeniedError):
        app.record_deadlines([(due, case.version + 2)], role=Role.CASEWORKER)


@pytest.mark.postgres
def test_a_second_one_off_grant_pays_again(app: CaseWork) -> None:
    case_id = enrolled(app, "temporary_relief", 300000)
    pay(app, case_id, "one-off", "temporary_relief", 300000)
    assert app.get_case(case_id).active_programmes == []
    app.enrol(
        {
            "case_id": case_id,
            "programme": "temporary_relief",
            "amount_fen": 200000,
            "effective_from": date(2023, 6, 1),
            "by": by("approver", days=90),
        }
    )
    pay(app, case_id, "one-off", "temporary_relief", 200000)
    assert app.get_case(case_id).paid_total_fen == 500000
