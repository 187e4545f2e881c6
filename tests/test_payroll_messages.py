"""`payment.settled` messages naming a payroll instruction: the cycle decides, once."""

from __future__ import annotations

from datetime import date

import orjson
import pytest

from consumers.contracts import parse_upstream
from consumers.intake import apply_batch, apply_upstream
from domain.application import CaseWork
from domain.payroll import PayrollCycle
from payroll.decide import approve, load_cycle
from payroll.prepare import prepare_month
from projections.payroll_ledger import PayrollLedger
from tests.payroll_stories import enrolled, ledger, staff

__all__ = ["ledger"]
pytestmark = pytest.mark.postgres


def settled(household: str, message_id: str, instruction: str, ref: str, **extra: object) -> bytes:
    return orjson.dumps({
        "specversion": "1.0", "id": message_id, "source": "/shaanxi/finance",
        "type": "payment.settled", "time": "2023-06-28T10:00:00+08:00",
        "data": {"household_id": household, "outcome": "paid", "programme": "rural_dibao",
                 "period": "2023-06", "amount_fen": 65000, "payment_ref": ref,
                 "instruction_id": instruction, **extra},
    })  # fmt: skip


def test_a_settlement_message_pays_the_case_once_and_a_second_one_is_a_finding(
    app: CaseWork, ledger: PayrollLedger
) -> None:
    case_id = enrolled(app, effective_from=date(2023, 6, 1), amount_fen=65000)
    household = app.get_case(case_id).household_id
    [prepared] = prepare_month(app, ledger, month="2023-06", by=staff("clerk-li", "caseworker"))
    instruction = PayrollCycle.instruction_id("2023-06", "rural_dibao", "610523", 1)
    early = parse_upstream(settled(household, "m-0", instruction, "BANK-1"))
    assert isinstance(apply_batch(app, [early])[0], Exception)  # not approved: nothing paid
    approve(app, ledger, prepared.cycle_id, by=staff("director-wang"))
    message = parse_upstream(settled(household, "m-1", instruction, "BANK-1"))
    assert apply_upstream(app, message) == "applied"
    assert apply_upstream(app, message) == "duplicate"
    assert app.get_case(case_id).payments == {"rural_dibao:2023-06": 65000}
    other = parse_upstream(settled(household, "m-2", instruction, "BANK-2"))
    assert apply_upstream(app, other) == "applied"
    cycle = load_cycle(app, prepared.cycle_id)
    assert cycle.settled == {instruction: ("paid", "BANK-1")}
    assert app.get_case(case_id).paid_total_fen == 65000
    assert [f[:3] for f in cycle.findings] == [["double_settlement", instruction, "BANK-2"]]
    unknown = parse_upstream(settled(household, "m-3", "PI-2023-06-rural_dibao-610523-000009", "B"))
    [error] = apply_batch(app, [unknown])
    assert "no payroll instruction has this id" in str(error)
