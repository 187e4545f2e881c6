"""A small province of cases whose report figures are worked out by hand in the tests."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid4

from domain.application import CaseWork
from projections.base import ReadModel, read_model_datastore
from projections.rebuild import REPORT_MODELS
from tests.conftest import DATABASE_URL
from tests.stories import by


def open_case(
    app: CaseWork, region: str, *, size: int = 3, channel: str = "monitoring_alert", days: int = 0
) -> UUID:
    """A case discovered on day `days` of the story."""
    case_id = uuid4()
    app.open_case(
        {
            "case_id": case_id,
            "household_id": f"HH-{region}-{case_id.hex[:8]}",
            "region": region,
            "channel": channel,
            "signals": ["income drop"],
            "household_size": size,
            "personal": {"name": "张某", "phone": "13800000000"},
            "by": by("upstream_system", days=days, reason="alert"),
        }
    )
    return case_id


def visit(app: CaseWork, case_id: UUID, verdict: str, *, size: int = 3, day: int = 3) -> None:
    """Assign on day 0 (due 10 March), consent on day 2, verify on `day`."""
    app.assign_verification(
        {"case_id": case_id, "assignee": "anren-team", "due_on": date(2023, 3, 10), "by": by()}
    )
    app.give_consent({"case_id": case_id, "given_by": "head", "by": by(days=2)})
    app.verify(
        {
            "case_id": case_id,
            "verdict": verdict,
            "household_size": size,
            "monthly_income_fen": 50000,
            "by": by(days=day),
        }
    )


def enrol(
    app: CaseWork, case_id: UUID, programme: str, amount_fen: int, *, category: str = ""
) -> None:
    """Enrol on day 20 (21 March), effective 1 April; dibao after a notice on day 4."""
    if programme.endswith("dibao"):
        app.publish_notice({"case_id": case_id, "starts_on": date(2023, 3, 5), "by": by(days=4)})
    app.enrol(
        {
            "case_id": case_id,
            "programme": programme,
            "amount_fen": amount_fen,
            "category": category,
            "effective_from": date(2023, 4, 1),
            "by": by("approver", days=20),
        }
    )


def pay(app: CaseWork, case_id: UUID, programme: str, period: str, amount: int, day: int) -> int:
    """A payment made on day `day` of the story."""
    return app.pay(
        {
            "case_id": case_id,
            "programme": programme,
            "period": period,
            "amount_fen": amount,
            "payment_ref": f"P-{uuid4().hex[:6]}",
            "by": by("upstream_system", days=day, reason="disbursement"),
        }
    )


def province(app: CaseWork) -> dict[str, UUID]:
    """Five cases in three counties of Shaanxi (START is 1 March 2023, 09:00 China time).

    a: Dali 610523, dibao from day 20, paid April (day 40) and May (day 70).
    b: Dali, verified "risk eliminated" on day 3, closed on day 5.
    c: Yichuan 610630, household of 4: dibao and temporary relief (paid day 21), a Red Cross
       referral accepted with 5,000 yuan (day 30), a companionship visit (day 35), dibao
       paid for April (day 40).
    d: Lianhu 610104: emergency relief of 2,000 yuan on day 0, assigned, never visited.
    e: Dali, came by hotline, nothing else yet.
    """
    a = open_case(app, "610523")
    visit(app, a, "needs_support")
    enrol(app, a, "rural_dibao", 50000, category="changing")
    pay(app, a, "rural_dibao", "2023-04", 50000, 40)
    pay(app, a, "rural_dibao", "2023-05", 50000, 70)

    b = open_case(app, "610523")
    visit(app, b, "risk_eliminated")
    app.close_case({"case_id": b, "by": by("approver", days=5, reason="risk gone")})

    c = open_case(app, "610630", size=4)
    visit(app, c, "needs_support", size=4)
    enrol(app, c, "rural_dibao", 60000, category="stable")
    enrol(app, c, "temporary_relief", 300000)
    pay(app, c, "temporary_relief", "one-off", 300000, 21)
    app.refer(
        {
            "case_id": c,
            "referral_id": "RF-1",
            "organisation": "Red Cross",
            "need": "major illness",
            "by": by(days=21),
        }
    )
    app.answer_referral(
        {
            "case_id": c,
            "referral_id": "RF-1",
            "accepted": True,
            "amount_fen": 500000,
            "by": by(days=30),
        }
    )
    app.deliver_service(
        {"case_id": c, "service": "companionship visit", "provider": "sunshine", "by": by(days=35)}
    )
    pay(app, c, "rural_dibao", "2023-04", 60000, 40)

    d = open_case(app, "610104")
    app.grant_emergency_relief(
        {"case_id": d, "grant_id": "EG-1", "amount_fen": 200000, "by": by(reason="fire")}
    )
    app.assign_verification(
        {"case_id": d, "assignee": "lianhu-team", "due_on": date(2023, 3, 10), "by": by(days=1)}
    )

    e = open_case(app, "610523", channel="hotline")
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


def report_models(schema: str) -> list[ReadModel]:
    """Every reporting read model, its tables created in a schema."""
    datastore = read_model_datastore(DATABASE_URL, schema=schema, pool_size=2)
    models = [cls(datastore) for cls in REPORT_MODELS]
    for model in models:
        model.create_table()
    return models


def rows(model: ReadModel, table: str) -> list[dict[str, Any]]:
    """A table's rows as dicts, in a stable order (by the whole row)."""
    with model.datastore.transaction(commit=False) as curs:
        curs.execute(model.sql(f"SELECT * FROM {{schema}}.{table} AS t ORDER BY t::text"))
        return [dict(row) for row in curs.fetchall()]


def snapshot(models: list[ReadModel]) -> dict[str, list[dict[str, Any]]]:
    """Every table of some read models, for before/after comparisons."""
    return {table: rows(model, table) for model in models for table in model.tables}
