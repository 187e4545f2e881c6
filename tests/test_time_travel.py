"""Auditors see a case as it stood at a version or at a moment; long cases use snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.application import CaseWork
from tests.stories import enrolled, pay

pytestmark = pytest.mark.postgres


def test_a_case_as_it_stood_at_a_version(app: CaseWork) -> None:
    case_id = enrolled(app)
    pay(app, case_id, "2023-04")
    pay(app, case_id, "2023-05")
    now = app.get_case(case_id)
    before_payments = app.get_case(case_id, version=now.version - 2)
    assert now.paid_total_fen == 100000
    assert before_payments.paid_total_fen == 0
    assert before_payments.status == "enrolled"
    assert app.get_case(case_id, version=1).status == "discovered"


def test_a_case_as_it_stood_at_a_moment(app: CaseWork) -> None:
    case_id = enrolled(app)
    pay(app, case_id, "2023-04")
    events = app.history(case_id)
    moment = events[-2].timestamp  # recorded time of the enrolment, before the payment
    past = app.case_as_of(case_id, moment)
    assert past.version == len(events) - 1
    assert past.paid_total_fen == 0
    assert app.case_as_of(case_id, datetime.now(UTC)).paid_total_fen == 50000


def test_long_cases_are_snapshotted_and_rebuild_identically(app: CaseWork) -> None:
    case_id = enrolled(app)
    periods = [f"{2023 + m // 12}-{m % 12 + 1:02d}" for m in range(3, 3 + 60)]
    for period in periods:
        pay(app, case_id, period)
    snapshots = list(app.snapshots.get(case_id)) if app.snapshots else []
    assert snapshots, "a case of more than 50 events has a snapshot"
    fresh = app.get_case(case_id)
    replayed = app.get_case(case_id, version=fresh.version)
    assert fresh.paid_total_fen == 60 * 50000
    assert replayed.payments == fresh.payments
    at_40 = app.get_case(case_id, version=40)
    assert at_40.paid_total_fen == (40 - 6) * 50000
