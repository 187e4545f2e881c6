"""Upstream messages taking effect on the real event store; the intake on in-memory brokers."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import uuid4

import orjson
import pytest
from faststream.kafka import KafkaMessage, TestKafkaBroker
from faststream.nats import TestNatsBroker

from consumers.contracts import parse_upstream
from consumers.intake import IntakeStats, apply_upstream, build_intake, read_situation
from consumers.translate import translate
from domain.application import CaseWork
from domain.case import Case
from tests.stories import by, enrolled

pytestmark = pytest.mark.postgres


def body(kind: str, household: str, data: dict[str, Any], message_id: str = "") -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": message_id or uuid4().hex,
            "source": "/shaanxi/upstream",
            "type": kind,
            "time": "2023-06-05T09:30:00+08:00",
            "data": {"household_id": household, **data},
        }
    )


def send(app: CaseWork, kind: str, household: str, message_id: str = "", **data: Any) -> str:
    """Apply one upstream message as the intake would; its outcome."""
    return apply_upstream(app, parse_upstream(body(kind, household, data, message_id)))


def alert(app: CaseWork, household: str, size: int = 1) -> str:
    signals = {"region": "610523", "signals": ["medical spending jumped"], "household_size": size}
    return send(app, "monitoring.alert", household, **signals)


VISIT = {
    "team": "anren-team",
    "consent": {"given": True},
    "verdict": "needs_support",
    "household_size": 1,
    "monthly_income_fen": 30000,
}


def test_a_household_goes_from_alert_to_verification_by_upstream_messages(app: CaseWork) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    assert alert(app, household) == "applied"
    assert send(app, "verification.reported", household, "visit-1", **VISIT) == "applied"
    [case_id] = app.household_chain(household)
    case = app.get_case(case_id)
    assert case.consent
    assert case.verdict == "needs_support"
    consent, verified = app.history(case_id)[-2:]
    assert isinstance(consent, Case.ConsentGiven)
    assert isinstance(verified, Case.Verified)
    assert consent.causation_id == verified.causation_id == "upstream:/shaanxi/upstream/visit-1"
    assert app.has_received("/shaanxi/upstream/visit-1")


def test_a_redelivered_message_changes_nothing(app: CaseWork) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    alert(app, household)
    assert send(app, "verification.reported", household, "visit-2", **VISIT) == "applied"
    position = app.recorder.max_notification_id()
    assert send(app, "verification.reported", household, "visit-2", **VISIT) == "duplicate"
    assert app.recorder.max_notification_id() == position


def test_a_message_interrupted_between_steps_runs_only_the_rest_when_redelivered(
    app: CaseWork,
) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    alert(app, household)
    event = parse_upstream(body("verification.reported", household, VISIT, "visit-3"))
    first, _ = translate(event, read_situation(app, event))
    app.give_consent(first)  # the crash came right after the first step
    assert not app.has_received(event.message_key)
    assert apply_upstream(app, event) == "applied"
    [case_id] = app.household_chain(household)
    kinds = [type(e).__name__ for e in app.history(case_id)]
    assert kinds == ["Discovered", "ConsentGiven", "Verified"]
    assert app.has_received(event.message_key)


def test_finance_settlements_pay_or_record_the_failure(app: CaseWork) -> None:
    case_id = enrolled(app)  # rural dibao from 2023-04
    household = app.get_case(case_id).household_id
    settled = {"programme": "rural_dibao", "amount_fen": 50000, "payment_ref": "PAY-1"}
    assert send(app, "payment.settled", household, outcome="paid", period="2023-04", **settled)
    send(app, "payment.settled", household, outcome="failed", period="2023-05", **settled)
    paid, failed = app.history(case_id)[-2:]
    assert isinstance(paid, Case.Paid)
    assert isinstance(failed, Case.PaymentFailed)
    assert app.get_case(case_id).paid_total_fen == 50000


def test_a_death_in_a_one_member_household_ends_benefits_and_closes_the_case(
    app: CaseWork,
) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    alert(app, household)
    send(app, "verification.reported", household, **VISIT)
    [case_id] = app.household_chain(household)
    app.enrol(
        {
            "case_id": case_id,
            "programme": "special_hardship",
            "amount_fen": 80000,
            "effective_from": date(2023, 6, 1),
            "by": by("approver", days=100),
        }
    )
    death = {"registration_ref": "DR-2023-7", "date_of_death": "2023-07-01"}
    assert send(app, "civil.death_registered", household, **death) == "applied"
    case = app.get_case(case_id)
    assert case.status == "closed"
    assert case.enrolments["special_hardship"]["ended_on"] == date(2023, 7, 1)
    assert "arts. 13 and 18" in (case.closed_reason or "")
    # The household may have a new case later: its chain is free again.
    assert alert(app, household) == "applied"
    assert len(app.household_chain(household)) == 2


def test_a_death_for_a_household_without_open_case_has_no_effect(app: CaseWork) -> None:
    death = {"registration_ref": "DR-2023-8", "date_of_death": "2023-07-01"}
    assert send(app, "civil.death_registered", "HH-unknown", **death) == "no_effect"


@pytest.mark.anyio
async def test_the_intake_on_an_in_memory_nats_broker(app: CaseWork) -> None:
    stats = IntakeStats()
    broker, _ = build_intake(broker_url="nats://127.0.0.1:4222", app=app, stats=stats)
    household = f"HH-{uuid4().hex[:8]}"
    message = body("monitoring.alert", household, {"region": "610523", "signals": ["arrears"]})
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(message, "relief.upstream.monitoring.alert")
        await test_broker.publish(message, "relief.upstream.monitoring.alert")
    assert (stats.applied, stats.duplicates) == (1, 1)
    assert len(app.household_chain(household)) == 1


@pytest.mark.anyio
async def test_the_intake_on_an_in_memory_kafka_broker_dead_letters_bad_bytes(
    app: CaseWork,
) -> None:
    stats = IntakeStats()
    broker, _ = build_intake(broker_url="kafka://127.0.0.1:9092", app=app, stats=stats)
    letters: list[tuple[bytes, dict[str, Any]]] = []

    @broker.subscriber("relief.deadletter.upstream")
    async def keep(message: KafkaMessage) -> None:
        letters.append((message.body, dict(message.headers)))

    household = f"HH-{uuid4().hex[:8]}"
    good = body("monitoring.alert", household, {"region": "610523", "signals": ["arrears"]})
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(good, "relief.upstream")
        await test_broker.publish(b"<alert/>", "relief.upstream")
    assert stats.applied == 1
    [(letter, headers)] = letters
    assert letter == b"<alert/>"
    assert headers["x-deadletter-reason"] == "not_json"
    assert headers["x-deadletter-origin"] == "relief.upstream"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
