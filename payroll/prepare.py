"""`payroll prepare`: a month's cycles from the enrolments in force, one save per cycle.

Resumable: a cycle is saved whole or not at all, with a uuid5 id, so a run that died
half-way is run again and prepares only the cycles still missing; a cycle that exists
is returned as it is. One preparer at a time (an advisory lock): two months prepared
at once would both list the same unpaid month as arrears.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError

from domain.entitlements import entitlements
from domain.payroll import Instruction, PayrollCycle
from domain.provenance import Provenance
from payroll.follow import authorise, catch_up, payroll_lock
from projections.payroll_ledger import PayrollLedger, decode_facts

__all__ = ["PreparedCycle", "cycle_exists", "owed_in", "prepare_month"]


@dataclass(frozen=True)
class PreparedCycle:
    """What preparing gave for one programme and county."""

    cycle_id: UUID
    key: str
    instructions: int
    amount_fen: int
    by_kind: dict[str, list[int]]
    existed: bool


def cycle_exists(app: Application[UUID], cycle_id: UUID) -> bool:
    """Whether a cycle has been saved (without loading it)."""
    return bool(app.recorder.select_events(cycle_id, limit=1))


def owed_in(
    ledger: PayrollLedger,
    month: str,
    programmes: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    *,
    except_cycle: UUID | None = None,
) -> Iterator[tuple[tuple[str, str], list[tuple[UUID, str, str, int, str]]]]:
    """Per (programme, county): (case, household, period, fen, kind) owed, in case order."""
    roll: tuple[str, str] | None = None
    owed: list[tuple[UUID, str, str, int, str]] = []
    for programme, region, case_id, household, facts, in_flight in ledger.histories(
        programmes, regions, except_cycle=except_cycle
    ):
        if (programme, region) != roll:
            if roll is not None:
                yield roll, owed
            roll, owed = (programme, region), []
        for item in entitlements(decode_facts(facts), month, in_flight or ()):
            owed.append((case_id, household, item.period, item.amount_fen, item.kind))
    if roll is not None:
        yield roll, owed


def prepare_month(
    app: Application[UUID],
    ledger: PayrollLedger,
    *,
    month: str,
    by: Provenance,
    programmes: set[str] | None = None,
    regions: set[str] | None = None,
) -> list[PreparedCycle]:
    """Prepare (or find) every cycle of a month, optionally for some programmes or counties."""
    authorise(by, "prepare_payroll")
    results = []
    with payroll_lock(app, "prepare"):
        position = catch_up(app, ledger)
        chosen = (sorted(programmes) if programmes else None, sorted(regions) if regions else None)
        for (programme, region), owed in owed_in(ledger, month, *chosen):
            cycle_id = PayrollCycle.id_for(month, programme, region)
            if cycle_exists(app, cycle_id):
                results.append(_found(app, cycle_id))
            elif owed:
                results.append(_prepare_one(app, month, programme, region, position, owed, by))
    return results


def _prepare_one(
    app: Application[UUID],
    month: str,
    programme: str,
    region: str,
    position: int,
    owed: list[tuple[UUID, str, str, int, str]],
    by: Provenance,
) -> PreparedCycle:
    items = [
        Instruction(
            PayrollCycle.instruction_id(month, programme, region, number),
            str(case_id), household, period, amount_fen, kind,
        )
        for number, (case_id, household, period, amount_fen, kind) in enumerate(owed, start=1)
    ]  # fmt: skip
    cycle = PayrollCycle.prepare(
        month=month, programme=programme, region=region, as_of=position, entitlements=items, by=by
    )
    try:
        app.save(cycle)
    except IntegrityError:  # prepared by another run meanwhile (the lock is per database)
        return _found(app, cycle.id)
    return PreparedCycle(cycle.id, cycle.key, *cycle.totals, cycle.by_kind, existed=False)


def _found(app: Application[UUID], cycle_id: UUID) -> PreparedCycle:
    cycle: object = app.repository.get(cycle_id)
    assert isinstance(cycle, PayrollCycle)
    return PreparedCycle(cycle.id, cycle.key, *cycle.totals, cycle.by_kind, existed=True)
