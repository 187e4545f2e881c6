"""Story tests for the workflow's rules, on the real PostgreSQL event store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any
from uuid import uuid4

import pytest

from domain.application import CaseWork
from domain.errors import (
    ActiveEnrolmentsError,
    CaseAlreadyOpenError,
    CaseIsClosedError,
    CaseNotFoundError,
    ConsentRequiredError,
    DuplicatePaymentError,
    EmergencyNotRegularisedError,
    InvalidCommandError,
    NotEnrolledError,
    NoticePeriodError,
    OutsideEnrolmentPeriodError,
    PermissionDeniedError,
    ReasonRequiredError,
    SelfApprovalError,
    VerificationRequiredError,
)
from tests.stories import by, enrolled, opened, pay, verified

pytestmark = pytest.mark.postgres


def appends_nothing(app: CaseWork, action: Callable[[], Any], error: type[Exception]) -> Exception:
    """Run a refused command: it raises the error and the log does not grow."""
    before = app.recorder.max_notification_id()
    with pytest.raises(error) as caught:
        action()
    assert app.recorder.max_notification_id() == before
    return caught.value


def test_a_household_can_have_only_one_open_case(app: CaseWork) -> None:
    first = opened(app, household="HH-1")
    error = appends_nothing(app, lambda: opened(app, household="HH-1"), CaseAlreadyOpenError)
    assert "HH-1" in str(error)
    assert str(first) in str(error)


def test_a_household_may_open_a_new_case_after_closing_the_last(app: CaseWork) -> None:
    first = opened(app, household="HH-2")
    app.close_case({"case_id": first, "by": by("approver", reason="risk eliminated")})
    second = opened(app, household="HH-2")
    assert app.household_chain("HH-2") == [first, second]


def test_no_step_on_a_closed_case(app: CaseWork) -> None:
    case_id = opened(app)
    app.close_case({"case_id": case_id, "by": by("approver", reason="moved out of province")})
    error = appends_nothing(
        app,
        lambda: app.attach_signal({"case_id": case_id, "signal": "x", "by": by()}),
        CaseIsClosedError,
    )
    assert str(case_id) in str(error)
    assert "no-step-on-closed-case" in str(error)


def test_verification_needs_consent(app: CaseWork) -> None:
    case_id = opened(app)
    appends_nothing(
        app,
        lambda: app.verify(
            {
                "case_id": case_id,
                "verdict": "needs_support",
                "household_size": 2,
                "monthly_income_fen": 0,
                "by": by(),
            }
        ),
        ConsentRequiredError,
    )


def enrol(app: CaseWork, case_id: Any, programme: str = "temporary_relief", days: int = 20) -> int:
    return app.enrol(
        {
            "case_id": case_id,
            "programme": programme,
            "amount_fen": 400000,
            "effective_from": date(2023, 4, 1),
            "by": by("approver", days=days),
        }
    )


def test_enrolment_needs_a_positive_verification(app: CaseWork) -> None:
    unverified = opened(app)
    appends_nothing(app, lambda: enrol(app, unverified), VerificationRequiredError)
    risk_gone = verified(app, verdict="risk_eliminated")
    error = appends_nothing(app, lambda: enrol(app, risk_gone), VerificationRequiredError)
    assert "risk_eliminated" in str(error)


def test_enrolment_needs_consent_still_in_force(app: CaseWork) -> None:
    case_id = verified(app)
    app.withdraw_consent({"case_id": case_id, "by": by(days=5, reason="household declined")})
    appends_nothing(app, lambda: enrol(app, case_id), ConsentRequiredError)


def test_dibao_enrolment_waits_for_the_public_notice_to_run(app: CaseWork) -> None:
    case_id = verified(app)
    appends_nothing(app, lambda: enrol(app, case_id, "rural_dibao"), NoticePeriodError)
    app.publish_notice({"case_id": case_id, "starts_on": date(2023, 3, 18), "by": by(days=17)})
    error = appends_nothing(
        app, lambda: enrol(app, case_id, "rural_dibao", days=20), NoticePeriodError
    )
    assert "2023-03-25" in str(error)
    app.raise_objection({"case_id": case_id, "objector": "neighbour", "by": by(days=19)})
    appends_nothing(app, lambda: enrol(app, case_id, "rural_dibao", days=30), NoticePeriodError)
    app.assess(
        {
            "case_id": case_id,
            "measures": [{"programme": "rural_dibao", "amount_fen": 50000}],
            "by": {
                **by("approver", days=29, reason="objection unfounded"),
                "actor": "assessment-panel",  # another approver enrols (four eyes)
            },
        }
    )
    enrol(app, case_id, "rural_dibao", days=30)
    assert app.get_case(case_id).active_programmes == ["rural_dibao"]


def test_referral_needs_consent(app: CaseWork) -> None:
    case_id = opened(app)
    appends_nothing(
        app,
        lambda: app.refer(
            {"case_id": case_id, "organisation": "Red Cross", "need": "major illness", "by": by()}
        ),
        ConsentRequiredError,
    )


def test_payment_for_a_programme_not_enrolled_is_refused(app: CaseWork) -> None:
    case_id = enrolled(app)
    error = appends_nothing(
        app, lambda: pay(app, case_id, "one-off", programme="temporary_relief"), NotEnrolledError
    )
    assert "temporary_relief" in str(error)


def test_payment_outside_the_enrolment_period_is_refused(app: CaseWork) -> None:
    case_id = enrolled(app)  # effective from 2023-04
    appends_nothing(app, lambda: pay(app, case_id, "2023-03"), OutsideEnrolmentPeriodError)
    pay(app, case_id, "2023-04")
    app.exit_programme(
        {
            "case_id": case_id,
            "programme": "rural_dibao",
            "ended_on": date(2023, 5, 31),
            "by": by("approver", days=90, reason="income above the line"),
        }
    )
    pay(app, case_id, "2023-05")
    appends_nothing(app, lambda: pay(app, case_id, "2023-06"), OutsideEnrolmentPeriodError)


def test_payment_twice_for_same_period_is_refused(app: CaseWork) -> None:
    case_id = enrolled(app)
    pay(app, case_id, "2023-04")
    appends_nothing(app, lambda: pay(app, case_id, "2023-04"), DuplicatePaymentError)


def test_a_one_off_grant_is_paid_once(app: CaseWork) -> None:
    case_id = enrolled(app, programme="temporary_relief", amount_fen=400000)
    appends_nothing(
        app,
        lambda: pay(app, case_id, "2023-04", programme="temporary_relief", amount_fen=400000),
        OutsideEnrolmentPeriodError,
    )
    pay(app, case_id, "one-off", programme="temporary_relief", amount_fen=400000)
    appends_nothing(
        app,
        lambda: pay(app, case_id, "one-off", programme="temporary_relief", amount_fen=400000),
        DuplicatePaymentError,
    )
    assert app.get_case(case_id).paid_total_fen == 400000


@pytest.mark.parametrize("amount", [0, -100, 12.5, "100", True])
def test_amounts_must_be_positive_whole_fen(app: CaseWork, amount: Any) -> None:
    case_id = enrolled(app)
    error = appends_nothing(
        app, lambda: pay(app, case_id, "2023-04", amount_fen=amount), InvalidCommandError
    )
    assert "amount_fen" in str(error)


def test_bad_input_names_the_field_and_appends_nothing(app: CaseWork) -> None:
    error = appends_nothing(
        app,
        lambda: app.open_case(
            {
                "household_id": "HH-x",
                "region": "61052",
                "channel": "pigeon",
                "by": by(reason=""),
            }
        ),
        InvalidCommandError,
    )
    message = str(error)
    for field in ("region", "channel", "by.reason"):
        assert field in message


@pytest.mark.parametrize("reason", ["", "   "])
def test_exit_and_closure_need_a_reason(app: CaseWork, reason: str) -> None:
    case_id = enrolled(app)
    appends_nothing(
        app,
        lambda: app.exit_programme(
            {
                "case_id": case_id,
                "programme": "rural_dibao",
                "ended_on": date(2023, 6, 30),
                "by": by("approver", reason=reason),
            }
        ),
        (InvalidCommandError, ReasonRequiredError),
    )
    appends_nothing(
        app,
        lambda: app.close_case({"case_id": case_id, "by": by("approver", reason=reason)}),
        (InvalidCommandError, ReasonRequiredError),
    )


def test_a_case_with_active_enrolments_cannot_close(app: CaseWork) -> None:
    case_id = enrolled(app)
    error = appends_nothing(
        app,
        lambda: app.close_case({"case_id": case_id, "by": by("approver", reason="done")}),
        ActiveEnrolmentsError,
    )
    assert "rural_dibao" in str(error)


def test_emergency_relief_precedes_verification_and_must_be_regularised(app: CaseWork) -> None:
    case_id = opened(app)
    app.grant_emergency_relief(
        {"case_id": case_id, "grant_id": "EG-1", "amount_fen": 200000, "by": by(reason="fire")}
    )
    assert app.get_case(case_id).paid_total_fen == 200000
    appends_nothing(
        app,
        lambda: app.regularise_emergency_relief(
            {"case_id": case_id, "grant_id": "EG-1", "by": by("approver", days=1)}
        ),
        VerificationRequiredError,
    )
    appends_nothing(
        app,
        lambda: app.close_case({"case_id": case_id, "by": by("approver", reason="resolved")}),
        EmergencyNotRegularisedError,
    )
    app.give_consent({"case_id": case_id, "given_by": "head", "by": by(days=2)})
    app.verify(
        {
            "case_id": case_id,
            "verdict": "not_eligible",
            "household_size": 2,
            "monthly_income_fen": 900000,
            "by": by(days=3),
        }
    )
    app.regularise_emergency_relief(
        {"case_id": case_id, "grant_id": "EG-1", "by": by("approver", days=4)}
    )
    app.close_case({"case_id": case_id, "by": by("approver", days=5, reason="not eligible")})
    assert app.get_case(case_id).status == "closed"


def test_unknown_case_is_named(app: CaseWork) -> None:
    missing = uuid4()
    with pytest.raises(CaseNotFoundError, match=str(missing)):
        app.attach_signal({"case_id": missing, "signal": "x", "by": by()})


def test_auditors_and_analysts_cannot_change_a_case(app: CaseWork) -> None:
    case_id = opened(app)
    for role in ("auditor", "analyst"):
        error = appends_nothing(
            app,
            lambda role=role: app.attach_signal(
                {"case_id": case_id, "signal": "x", "by": by(role)}
            ),
            PermissionDeniedError,
        )
        assert role in str(error)


def test_caseworker_cannot_enrol(app: CaseWork) -> None:
    case_id = verified(app)
    appends_nothing(
        app,
        lambda: app.enrol(
            {
                "case_id": case_id,
                "programme": "temporary_relief",
                "amount_fen": 100,
                "effective_from": date(2023, 4, 1),
                "by": by("caseworker"),
            }
        ),
        PermissionDeniedError,
    )


def test_every_event_records_who_why_what_caused_it_and_when(app: CaseWork) -> None:
    case_id = opened(app)
    app.give_consent(
        {
            "case_id": case_id,
            "given_by": "head",
            "by": by(days=2, causation_id="upstream:hall/42", correlation_id="application-7"),
        }
    )
    first, consent = app.history(case_id)
    assert (consent.actor, consent.role) == ("caseworker-1", "caseworker")
    assert consent.reason == "per procedure"
    assert (consent.causation_id, consent.correlation_id) == ("upstream:hall/42", "application-7")
    assert consent.occurred_at.day == 3
    assert consent.timestamp > consent.occurred_at  # recorded now, happened in 2023
    assert first.causation_id.startswith("command:")
    assert first.correlation_id == first.causation_id


def test_commands_return_the_notification_id(app: CaseWork) -> None:
    case_id = enrolled(app)
    notification_id = pay(app, case_id, "2023-04")
    assert notification_id == app.recorder.max_notification_id()


def test_an_approver_may_not_enrol_on_their_own_assessment(app: CaseWork) -> None:
    case_id = verified(app)
    app.assess(
        {
            "case_id": case_id,
            "measures": [{"programme": "temporary_relief", "amount_fen": 400000}],
            "by": by("approver", days=10),
        }
    )
    error = appends_nothing(app, lambda: enrol(app, case_id), SelfApprovalError)
    assert "approver-1 assessed this case and may not enrol it in temporary_relief" in str(error)
    assert isinstance(error, SelfApprovalError)
    assert error.rule == "four-eyes-approval"
    other = {**by("approver", days=20), "actor": "approver-2"}
    app.enrol(
        {
            "case_id": case_id,
            "programme": "temporary_relief",
            "amount_fen": 400000,
            "effective_from": date(2023, 4, 1),
            "by": other,
        }
    )
    assert app.get_case(case_id).active_programmes == ["temporary_relief"]


def test_whoever_granted_emergency_relief_may_not_regularise_it(app: CaseWork) -> None:
    case_id = verified(app)
    granter = {**by("approver"), "reason": "fire"}
    app.grant_emergency_relief(
        {"case_id": case_id, "grant_id": "EG-1", "amount_fen": 100000, "by": granter}
    )
    regularise = {"case_id": case_id, "grant_id": "EG-1", "by": by("approver", days=4)}
    appends_nothing(app, lambda: app.regularise_emergency_relief(regularise), SelfApprovalError)
    app.policy = replace(app.policy, four_eyes=False)  # a locality that allows it
    app.regularise_emergency_relief(regularise)
    assert app.get_case(case_id).emergency_grants["EG-1"]["regularised"]
