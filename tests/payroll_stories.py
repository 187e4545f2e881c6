"""Builders for payroll stories: enrolled households, cycles prepared, approved, settled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.application import CaseWork
from domain.provenance import Provenance
from projections.base import read_model_datastore
from projections.payroll_ledger import PayrollLedger
from tests.conftest import DATABASE_URL

CHINA = timezone(timedelta(hours=8))


def when(day: date) -> datetime:
    """Nine in the morning of a day, China time."""
    return datetime(day.year, day.month, day.day, 9, tzinfo=CHINA)


def by(actor: str, role: str, day: date, reason: str = "per procedure") -> dict[str, Any]:
    """A command's provenance on a day."""
    return {"actor": actor, "role": role, "reason": reason, "occurred_at": when(day)}


def staff(actor: str, role: str = "approver", day: date = date(2023, 9, 25)) -> Provenance:
    """Provenance of a payroll step."""
    return Provenance(actor=actor, role=role, reason="monthly payroll", occurred_at=when(day))


def enrolled(
    app: CaseWork,
    *,
    effective_from: date,
    amount_fen: int,
    region: str = "610523",
    programme: str = "rural_dibao",
    household_size: int = 1,
    account: str = "6217003810000123456",
) -> UUID:
    """A household discovered, verified with consent, noticed and enrolled."""
    case_id, start = uuid4(), effective_from - timedelta(days=20)
    app.open_case({
        "case_id": case_id, "household_id": f"HH-{uuid4().hex[:10]}", "region": region,
        "channel": "monitoring_alert", "household_size": household_size,
        "personal": {"name": "王某", "bank_account": account},
        "by": by("platform", "upstream_system", start, "monitoring alert"),
    })  # fmt: skip
    app.give_consent({"case_id": case_id, "given_by": "head", "by": by("w", "caseworker", start)})
    app.verify({
        "case_id": case_id, "verdict": "needs_support", "household_size": household_size,
        "monthly_income_fen": 20000, "by": by("w", "caseworker", start),
    })  # fmt: skip
    if programme.endswith("dibao"):
        app.publish_notice(
            {"case_id": case_id, "starts_on": start, "by": by("w", "caseworker", start)}
        )
    app.enrol({
        "case_id": case_id, "programme": programme, "amount_fen": amount_fen,
        "category": "stable", "effective_from": effective_from,
        "by": by("director", "approver", effective_from),
    })  # fmt: skip
    return case_id


@pytest.fixture
def ledger(pg_schema: str) -> Iterator[PayrollLedger]:
    """The payroll ledger in the test's schema."""
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema)
    model = PayrollLedger(datastore)
    model.create_table()
    try:
        yield model
    finally:
        datastore.close()
