"""Translation of upstream messages into commands: decided on the situation, no I/O."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import orjson
import pytest

from consumers.contracts import CloudEvent, parse_upstream
from consumers.translate import CaseFacts, NoOpenCaseError, Situation, case_id_for, translate
from domain.commands import (
    AttachSignal,
    CloseCase,
    ExitProgramme,
    GiveConsent,
    OpenCase,
    Pay,
    RecordPaymentFailure,
    Verify,
    WithdrawConsent,
)

HOUSEHOLD = "HH-610523-0001"
CASE = uuid4()


def message(kind: str, data: dict[str, Any], **envelope: Any) -> CloudEvent:
    return parse_upstream(
        orjson.dumps(
            {
                "specversion": "1.0",
                "id": "m-1",
                "source": "/upstream",
                "type": kind,
                "time": "2023-06-05T09:30:00+08:00",
                "data": {"household_id": HOUSEHOLD, **data},
                **envelope,
            }
        )
    )


def alert(**data: Any) -> CloudEvent:
    return message(
        "monitoring.alert",
        {"region": "610523", "signals": ["medical spending jumped"], **data},
        correlationid="batch-6",
    )


def facts(**overrides: Any) -> Situation:
    case = CaseFacts(
        **{"case_id": CASE, "household_id": HOUSEHOLD, "household_size": 1, "consent": True}
        | overrides
    )
    return Situation(open_case_id=CASE, case=case)


def test_an_alert_for_a_household_without_open_case_opens_one() -> None:
    event = alert(indicators={"medical_spending_yuan": 47000}, household_size=3)
    [command] = translate(event, Situation())
    assert isinstance(command, OpenCase)
    assert command.case_id == case_id_for(event)  # the same on every redelivery
    assert command.channel == "monitoring_alert"
    assert command.signals == ["medical spending jumped", "indicator medical_spending_yuan=47000"]
    assert command.household_size == 3
    assert command.by.actor == "/upstream"
    assert command.by.role == "upstream_system"
    assert command.by.causation_id == "upstream:/upstream/m-1"
    assert command.by.correlation_id == "batch-6"
    assert command.by.occurred_at.isoformat() == "2023-06-05T09:30:00+08:00"
    assert "monitoring alert" in command.by.reason


def test_an_alert_for_a_household_with_open_case_attaches_one_signal() -> None:
    [command] = translate(alert(signals=["income fell", "arrears"]), Situation(open_case_id=CASE))
    assert isinstance(command, AttachSignal)
    assert command.case_id == CASE
    assert command.signal == "monitoring alert: income fell; arrears"


def test_the_upstream_reason_replaces_the_default_legal_basis() -> None:
    [command] = translate(alert(reason="flagged by batch 6 comparison"), Situation())
    assert command.by.reason == "flagged by batch 6 comparison"


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("hotline", "hotline"),
        ("online", "application_online"),
        ("one_window_hall", "application_hall"),
    ],
)
def test_an_application_opens_a_case_on_its_channel(channel: str, expected: str) -> None:
    data = {"region": "610523", "channel": channel, "programmes": ["rural_dibao"], "need": "ill"}
    [command] = translate(message("application.submitted", data), Situation())
    assert isinstance(command, OpenCase)
    assert command.channel == expected
    assert command.signals == ["applied for rural_dibao: ill"]
    assert "art. 11" in command.by.reason


def verification(given: bool = True) -> CloudEvent:
    return message(
        "verification.reported",
        {
            "team": "anren-team",
            "consent": {"given": given},
            "verdict": "needs_support",
            "household_size": 4,
            "monthly_income_fen": 250000,
            "facts": {"illness": "uraemia"},
        },
    )


def test_a_verification_records_consent_first_when_it_is_new() -> None:
    consent, verify = translate(verification(), facts(consent=False))
    assert isinstance(consent, GiveConsent)
    assert isinstance(verify, Verify)
    assert verify.facts == {"team": "anren-team", "illness": "uraemia"}


def test_a_verification_after_consent_only_verifies() -> None:
    [verify] = translate(verification(), facts(consent=True))
    assert isinstance(verify, Verify)


def test_a_visit_without_consent_records_the_refusal_not_a_verdict() -> None:
    assert [type(c) for c in translate(verification(given=False), facts(consent=True))] == [
        WithdrawConsent,
        AttachSignal,
    ]
    [refusal] = translate(verification(given=False), facts(consent=False))
    assert isinstance(refusal, AttachSignal)


def test_a_verification_for_a_household_without_open_case_is_refused() -> None:
    with pytest.raises(NoOpenCaseError, match=HOUSEHOLD):
        translate(verification(), Situation())


def payment(outcome: str, **data: Any) -> CloudEvent:
    return message(
        "payment.settled",
        {
            "outcome": outcome,
            "programme": "rural_dibao",
            "period": "2023-06",
            "amount_fen": 50000,
            "payment_ref": "PAY-1",
            **data,
        },
    )


def test_a_settled_payment_pays_and_a_failed_one_records_the_failure() -> None:
    [paid] = translate(payment("paid"), facts())
    assert isinstance(paid, Pay)
    [failed] = translate(payment("failed", failure="account closed"), facts())
    assert isinstance(failed, RecordPaymentFailure)
    assert failed.by.reason == "payment failed: account closed"


def death() -> CloudEvent:
    data = {"registration_ref": "DR-2023-1", "date_of_death": "2023-07-01"}
    return message("civil.death_registered", data)


def test_a_death_in_a_one_member_household_ends_every_benefit_and_closes_the_case() -> None:
    *exits, close = translate(death(), facts(active_programmes=("rural_dibao", "care_services")))
    assert [(e.programme, str(e.ended_on)) for e in exits if isinstance(e, ExitProgramme)] == [
        ("rural_dibao", "2023-07-01"),
        ("care_services", "2023-07-01"),
    ]
    assert isinstance(close, CloseCase)
    assert "arts. 13 and 18" in close.by.reason


def test_a_death_waits_for_emergency_grants_to_be_regularised_before_closing() -> None:
    situation = facts(active_programmes=("rural_dibao",), unregularised_grants=("EG-1",))
    exit_, signal = translate(death(), situation)
    assert isinstance(exit_, ExitProgramme)
    assert isinstance(signal, AttachSignal)
    assert "EG-1" in signal.signal


def test_a_death_in_a_larger_household_asks_for_a_review_and_ends_nothing() -> None:
    [signal] = translate(death(), facts(household_size=3, active_programmes=("rural_dibao",)))
    assert isinstance(signal, AttachSignal)
    assert "household of 3 now 2" in signal.signal
    assert "reviewed" in signal.by.reason


def test_a_death_in_a_household_without_open_case_changes_nothing() -> None:
    assert translate(death(), Situation()) == []
