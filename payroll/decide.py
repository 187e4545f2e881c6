"""Approving or rejecting a prepared cycle: a second person, shown totals and differences."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

from domain.payroll import PayrollCycle, PayrollError
from domain.provenance import Provenance
from payroll.follow import authorise, catch_up
from payroll.prepare import owed_in
from projections.payroll_ledger import PayrollLedger

__all__ = ["Difference", "approve", "differences", "load_cycle", "reject"]


@dataclass(frozen=True)
class Difference:
    """An entitlement that changed since the cycle was prepared (not silently included)."""

    case_id: str
    period: str
    prepared_fen: int | None  # None: owed now, not in the cycle
    now_fen: int | None  # None: in the cycle, no longer owed

    def __str__(self) -> str:
        was, now = self.prepared_fen, self.now_fen
        return f"case {self.case_id} {self.period}: prepared {was} fen, now {now} fen"


def load_cycle(app: Application[UUID], cycle: UUID | str) -> PayrollCycle:
    """A cycle by id or by name 'YYYY-MM/programme/region'; PayrollError if there is none."""
    cycle_id = cycle if isinstance(cycle, UUID) else _cycle_id(cycle)
    try:
        found: object = app.repository.get(cycle_id)
    except AggregateNotFoundError:
        raise PayrollError(str(cycle), "no such payroll cycle") from None
    if not isinstance(found, PayrollCycle):
        raise PayrollError(str(cycle), "no such payroll cycle")
    return found


def _cycle_id(text: str) -> UUID:
    parts = text.split("/")
    if len(parts) == 3:
        return PayrollCycle.id_for(*parts)
    try:
        return UUID(text)
    except ValueError:
        msg = "is neither a cycle id nor a name like 2023-06/rural_dibao/610523"
        raise PayrollError(text, msg) from None


def differences(
    app: Application[UUID], ledger: PayrollLedger, cycle: PayrollCycle
) -> list[Difference]:
    """What the cycle would list if prepared now, against what it lists."""
    catch_up(app, ledger)
    prepared = {(i.case_id, i.period): i.amount_fen for i in cycle.instructions.values()}
    now = {
        (str(case_id), period): fen
        for _roll, owed in owed_in(
            ledger, cycle.month, [cycle.programme], [cycle.region], except_cycle=cycle.id
        )
        for case_id, _household, period, fen, _kind in owed
    }
    found = []
    for key in sorted(prepared.keys() | now.keys()):
        if prepared.get(key) != now.get(key):
            found.append(Difference(key[0], key[1], prepared.get(key), now.get(key)))
    return found


def approve(
    app: Application[UUID], ledger: PayrollLedger, cycle_ref: UUID | str, *, by: Provenance
) -> tuple[PayrollCycle, list[Difference]]:
    """Approve a cycle (maker-checker in the domain), recording how many differences it had."""
    authorise(by, "approve_payroll")
    cycle = load_cycle(app, cycle_ref)
    cycle.check_decision(by, "approve")  # refuse before the differences are worked out
    found = differences(app, ledger, cycle)
    cycle.approve(len(found), by=by)
    app.save(cycle)
    return cycle, found


def reject(app: Application[UUID], cycle_ref: UUID | str, *, by: Provenance) -> PayrollCycle:
    """Reject a cycle: its entitlements stay owed and come back in a later cycle."""
    authorise(by, "reject_payroll")
    cycle = load_cycle(app, cycle_ref)
    cycle.reject(by=by)
    app.save(cycle)
    return cycle
