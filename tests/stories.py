"""Builders for case stories used by the tests: provenance and common paths."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

from domain.application import CaseWork

START = datetime(2023, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=8)))


def by(
    role: str = "caseworker", *, days: int = 0, reason: str = "per procedure", **extra: Any
) -> dict[str, Any]:
    """Provenance of a step taken some days after the story starts."""
    return {
        "actor": f"{role}-1",
        "role": role,
        "reason": reason,
        "occurred_at": START + timedelta(days=days),
        **extra,
    }


def opened(app: CaseWork, household: str | None = None, region: str = "610523") -> UUID:
    """A case just discovered by the monitoring platform."""
    case_id = uuid4()
    app.open_case(
        {
            "case_id": case_id,
            "household_id": household or f"HH-{uuid4().hex[:8]}",
            "region": region,
            "channel": "monitoring_alert",
            "signals": ["medical spending jumped"],
            "household_size": 3,
            "personal": {"name": "王某", "id_card": "610523198001011234"},
            "by": by("upstream_system", reason="monitoring alert"),
        }
    )
    return case_id


def verified(app: CaseWork, verdict: str = "needs_support", household: str | None = None) -> UUID:
    """A case visited with consent and verified."""
    case_id = opened(app, household)
    app.assign_verification(
        {"case_id": case_id, "assignee": "anren-team", "due_on": date(2023, 3, 10), "by": by()}
    )
    app.give_consent({"case_id": case_id, "given_by": "head of household", "by": by(days=2)})
    app.verify(
        {
            "case_id": case_id,
            "verdict": verdict,
            "household_size": 3,
            "monthly_income_fen": 120000,
            "by": by(days=3),
        }
    )
    return case_id


def enrolled(app: CaseWork, programme: str = "rural_dibao", amount_fen: int = 50000) -> UUID:
    """A verified case enrolled in a programme after its public notice."""
    case_id = verified(app)
    if programme.endswith("dibao"):
        app.publish_notice({"case_id": case_id, "starts_on": date(2023, 3, 5), "by": by(days=4)})
    app.enrol(
        {
            "case_id": case_id,
            "programme": programme,
            "amount_fen": amount_fen,
            "category": "changing",
            "effective_from": date(2023, 4, 1),
            "by": by("approver", days=20),
        }
    )
    return case_id


def pay(
    app: CaseWork,
    case_id: UUID,
    period: str,
    programme: str = "rural_dibao",
    amount_fen: int = 50000,
) -> int:
    """Pay a period of a programme."""
    return app.pay(
        {
            "case_id": case_id,
            "programme": programme,
            "period": period,
            "amount_fen": amount_fen,
            "payment_ref": f"PAY-{period}-{uuid4().hex[:6]}",
            "by": by("upstream_system", days=40, reason="monthly disbursement"),
        }
    )
