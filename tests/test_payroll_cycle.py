"""Payroll stories on the real PostgreSQL: prepare, approve, export, settle, carry over."""

from __future__ import annotations

from datetime import date

from domain.application import CaseWork
from domain.payroll import PayrollCycle
from payroll.prepare import prepare_month
from projections.payroll_ledger import PayrollLedger
from tests.payroll_stories import by, enrolled, ledger, staff

__all__ = ["ledger"]


def owed(app: CaseWork, month: str, case_id: object) -> dict[str, int]:
    cycle = app.repository.get(PayrollCycle.id_for(month, "rural_dibao", "610523"))
    return {
        i.period: i.amount_fen for i in cycle.instructions.values() if i.case_id == str(case_id)
    }


def test_adjusted_in_may_and_exited_in_august_is_owed_exactly_march_to_july(
    app: CaseWork, ledger: PayrollLedger
) -> None:
    case_id = enrolled(app, effective_from=date(2023, 3, 10), amount_fen=65000)
    app.adjust_benefit({
        "case_id": case_id, "programme": "rural_dibao", "amount_fen": 70000,
        "effective_from": date(2023, 5, 1), "by": by("director", "approver", date(2023, 4, 20)),
    })  # fmt: skip
    app.exit_programme({
        "case_id": case_id, "programme": "rural_dibao", "ended_on": date(2023, 8, 1),
        "by": by("director", "approver", date(2023, 7, 28), "income above the line"),
    })  # fmt: skip
    prepared = prepare_month(app, ledger, month="2023-09", by=staff("clerk-li", "caseworker"))
    assert [(p.key, p.instructions, p.amount_fen) for p in prepared] == [
        ("2023-09/rural_dibao/610523", 5, 2 * 65000 + 3 * 70000)
    ]
    assert owed(app, "2023-09", case_id) == {
        "2023-03": 65000, "2023-04": 65000, "2023-05": 70000, "2023-06": 70000,
        "2023-07": 70000,
    }  # fmt: skip
    again = prepare_month(app, ledger, month="2023-09", by=staff("clerk-li", "caseworker"))
    assert [(p.cycle_id, p.existed) for p in again] == [(prepared[0].cycle_id, True)]
