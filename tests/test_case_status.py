"""case_status from the log feed equals what the event store says about every case."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.application import CaseWork
from domain.case import Case
from projections.base import ReadModel, read_model_datastore
from projections.case_status import CaseStatus
from projections.feed import catch_up, log_batches
from tests.conftest import DATABASE_URL
from tests.stories import by, enrolled, opened, pay, verified

pytestmark = pytest.mark.postgres

DISCOVERED_TOPIC = "domain.case:Case.Discovered"


def varied_cases(app: CaseWork, rounds: int = 1) -> list[UUID]:
    """Cases at every stage: open, verifying, verified, enrolled and paid, exited, closed."""
    cases: list[UUID] = []
    for _ in range(rounds):
        just_opened = opened(app, region="610102")
        verifying = opened(app, region="611002")
        app.assign_verification(
            {"case_id": verifying, "assignee": "team", "due_on": date(2023, 3, 9), "by": by()}
        )
        eliminated = verified(app, verdict="risk_eliminated")
        paid = enrolled(app)
        pay(app, paid, "2023-04")
        pay(app, paid, "2023-05")
        app.grant_emergency_relief(
            {"case_id": paid, "grant_id": uuid4().hex[:8], "amount_fen": 400000, "by": by()}
        )
        closed = enrolled(app, programme="temporary_relief", amount_fen=300000)
        pay(app, closed, "one-off", programme="temporary_relief", amount_fen=300000)
        # The grant's enrolment ended with its one payment: the case may close.
        app.close_case({"case_id": closed, "by": by("approver", days=61, reason="relief done")})
        cases += [just_opened, verifying, eliminated, paid, closed]
    return cases


def all_case_ids(app: CaseWork) -> list[UUID]:
    """Every case in the event store, from its Discovered events."""
    ids: list[UUID] = []
    for batch in log_batches(app, topics=[DISCOVERED_TOPIC]):
        ids += [event.originator_id for event, _ in batch]
    return ids


def expected_rows(app: CaseWork) -> dict[UUID, dict[str, Any]]:
    """case_status as the event store says it should be (the domain's Case, not the fold)."""
    rows = {}
    for case_id in all_case_ids(app):
        case = app.get_case(case_id)
        history = app.history(case_id)
        enrolments = [e for e in history if isinstance(e, Case.Enrolled)]
        payments = [e for e in history if isinstance(e, Case.Paid | Case.EmergencyReliefGranted)]
        rows[case_id] = {
            "case_id": case_id,
            "household_id": case.household_id,
            "region": case.region,
            "county_code": case.region,
            "city_code": case.region[:4],
            "province_code": case.region[:2],
            "channel": case.channel,
            "status": case.status,
            "verdict": case.verdict,
            "programmes": sorted(case.active_programmes),
            "paid_total_fen": case.paid_total_fen,
            "payments": len(case.payments) + len(case.emergency_grants),
            "discovered_at": case.discovered_at,
            "verified_at": case.verified_at,
            "first_enrolled_at": enrolments[0].occurred_at if enrolments else None,
            "first_paid_at": payments[0].occurred_at if payments else None,
            "closed_at": case.closed_at,
            "last_event_at": history[-1].timestamp,
            "version": case.version,
        }
    return rows


def table_rows(model: ReadModel) -> dict[UUID, dict[str, Any]]:
    """The case_status table as it is, keyed by case id."""
    with model.datastore.transaction(commit=False) as curs:
        curs.execute(model.sql("SELECT * FROM {schema}.case_status"))
        return {row["case_id"]: dict(row) for row in curs.fetchall()}


def test_case_status_equals_the_event_store(app: CaseWork, pg_schema: str) -> None:
    model = CaseStatus(read_model_datastore(DATABASE_URL, schema=pg_schema))
    model.create_table()
    varied_cases(app, rounds=2)
    catch_up(model, app, batch_size=7)  # small batches: rows are loaded back between them
    rows = table_rows(model)
    assert rows == expected_rows(app)
    assert {r["status"] for r in rows.values()} == {
        "discovered",
        "verifying",
        "verified",
        "enrolled",
        "closed",
    }
    model.datastore.close()


def test_personal_data_never_reaches_case_status(app: CaseWork, pg_schema: str) -> None:
    model = CaseStatus(read_model_datastore(DATABASE_URL, schema=pg_schema))
    model.create_table()
    opened(app)
    catch_up(model, app)
    (row,) = table_rows(model).values()
    assert "王某" not in repr(row)
    assert "610523198001011234" not in repr(row)
    model.datastore.close()


def test_redelivered_batches_change_nothing(app: CaseWork, pg_schema: str) -> None:
    model = CaseStatus(read_model_datastore(DATABASE_URL, schema=pg_schema))
    model.create_table()
    varied_cases(app)
    catch_up(model, app)
    before = table_rows(model)
    for batch in log_batches(app, batch_size=3):
        assert model.apply(batch, application_name=app.name) == 0
    assert table_rows(model) == before == expected_rows(app)
    model.datastore.close()
