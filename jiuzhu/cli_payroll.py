"""`jiuzhu payroll`: prepare a month's cycles, approve or reject, export, settle."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from domain.provenance import Provenance
from domain.values import Programme, validate_region
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.signing import signer_from_settings
from jiuzhu.cli_common import (
    ActorOpt,
    RoleOpt,
    console,
    fail,
    load_settings,
    print_json,
    user_errors,
    who,
)
from jiuzhu.narrate import CHINA_TIME
from jiuzhu.runtime import endpoints, open_casework
from jiuzhu.settings import Settings
from payroll.decide import approve, differences, load_cycle, reject
from payroll.export import export_cycle
from payroll.prepare import prepare_month
from payroll.settle import settle_file
from projections.base import read_model_datastore
from projections.payroll_ledger import PayrollLedger

__all__ = ["app"]

app = typer.Typer(
    help="Monthly payroll: prepare, approve (a second person), export, settle.",
    no_args_is_help=True,
)
CycleArg = Annotated[
    str, typer.Argument(metavar="CYCLE", help="Cycle id, or its name 2023-06/rural_dibao/610523")
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: recorded on the cycle")]
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@contextmanager
def _payroll(settings: Settings) -> Iterator[tuple[AuditedCaseWork, PayrollLedger]]:
    with endpoints(settings) as ends, open_casework(settings, ends.database_url) as casework:
        if not isinstance(casework, AuditedCaseWork):
            raise fail("the audit trail is not wired into this CaseWork")
        datastore = read_model_datastore(ends.database_url, schema=settings.db_schema)
        try:
            ledger = PayrollLedger(datastore)
            ledger.create_table()
            yield casework, ledger
        finally:
            datastore.close()


def _by(settings: Settings, actor: str | None, role: str | None, reason: str) -> Provenance:
    person = who(settings, actor, role)
    try:
        return Provenance.model_validate(
            {"actor": person.actor, "role": person.role, "reason": reason,
             "occurred_at": datetime.now(CHINA_TIME)}
        )  # fmt: skip
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise fail(f"invalid payroll step: {problems}") from None


@app.command("prepare")
@user_errors
def prepare_command(
    month: Annotated[str, typer.Option("--month", help="The payroll month, 2023-06")],
    programme: Annotated[
        list[str] | None, typer.Option("--programme", help="Only this programme (repeatable)")
    ] = None,
    region: Annotated[
        list[str] | None, typer.Option("--region", help="Only this county (repeatable)")
    ] = None,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Prepare the month's cycles (or find them, if prepared already); prints their totals."""
    if not _MONTH.match(month):
        raise fail(f"--month {month!r} is not a month like 2023-06")
    known = {p.value for p in Programme}
    if unknown := [p for p in programme or [] if p not in known]:
        raise fail(f"--programme {unknown[0]!r} is not one of {', '.join(sorted(known))}")
    for code in region or []:
        try:
            validate_region(code)
        except ValueError as error:
            raise fail(f"--region: {error}") from None
    settings = load_settings()
    by = _by(settings, actor, role, f"payroll of {month}")
    with _payroll(settings) as (casework, ledger):
        cycles = prepare_month(
            casework,
            ledger,
            month=month,
            by=by,
            programmes=set(programme or []) or None,
            regions=set(region or []) or None,
        )
    print_json(
        [
            {
                "cycle_id": c.cycle_id,
                "cycle": c.key,
                "instructions": c.instructions,
                "amount_fen": c.amount_fen,
                "by_kind": c.by_kind,
                "already_prepared": c.existed,
            }
            for c in cycles
        ]
    )


@app.command("show")
@user_errors
def show_command(cycle: CycleArg, actor: ActorOpt = None, role: RoleOpt = None) -> None:
    """A cycle's status, totals and reconciliation findings, and what changed since preparing."""
    settings = load_settings()
    person = who(settings, actor, role)
    with _payroll(settings) as (casework, ledger):
        casework.authorise_read(person.actor, person.role, "read_payroll")
        found = load_cycle(casework, cycle)
        changed = differences(casework, ledger, found) if found.status == "prepared" else []
    print_json(_summary(found) | {"differences": [str(d) for d in changed]})


def _summary(cycle: Any) -> dict[str, Any]:
    settled = list(cycle.settled.values())
    return {
        "cycle_id": cycle.id,
        "cycle": cycle.key,
        "status": cycle.status,
        "prepared_by": cycle.preparer,
        "approved_by": cycle.approver,
        "instructions": cycle.totals[0],
        "amount_fen": cycle.totals[1],
        "by_kind": cycle.by_kind,
        "paid": sum(1 for outcome, _ in settled if outcome == "paid"),
        "failed": sum(1 for outcome, _ in settled if outcome == "failed"),
        "outstanding": len(cycle.outstanding),
        "findings": [
            dict(
                zip(
                    ("kind", "instruction_id", "payment_ref", "amount_fen", "detail"),
                    f,
                    strict=True,
                )
            )
            for f in cycle.findings
        ],
    }


@app.command("approve")
@user_errors
def approve_command(
    cycle: CycleArg, reason: ReasonOpt, actor: ActorOpt = None, role: RoleOpt = None
) -> None:
    """Approve a prepared cycle (not by its preparer); prints its totals and differences."""
    settings = load_settings()
    by = _by(settings, actor, role, reason)
    with _payroll(settings) as (casework, ledger):
        approved, changed = approve(casework, ledger, cycle, by=by)
    print_json(_summary(approved) | {"differences": [str(d) for d in changed]})


@app.command("reject")
@user_errors
def reject_command(
    cycle: CycleArg, reason: ReasonOpt, actor: ActorOpt = None, role: RoleOpt = None
) -> None:
    """Reject a prepared cycle (not by its preparer): its months stay owed."""
    settings = load_settings()
    by = _by(settings, actor, role, reason)
    with _payroll(settings) as (casework, _ledger):
        rejected = reject(casework, cycle, by=by)
    print_json(_summary(rejected))


@app.command("export")
@user_errors
def export_command(
    cycle: CycleArg,
    out: Annotated[Path, typer.Option("--out", help="Directory for the files")] = Path("."),
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Write an approved cycle's instructions (CSV and JSON lines, signed digest line)."""
    settings = load_settings()
    by = _by(settings, actor, role, "disbursement instructions to finance")
    with _payroll(settings) as (casework, _ledger):
        written = export_cycle(
            casework, cycle, out_dir=out, signer=signer_from_settings(settings), by=by
        )
    print_json(written.__dict__ | {"csv_path": str(written.csv_path),
                                   "jsonl_path": str(written.jsonl_path)})  # fmt: skip


@app.command("settle")
@user_errors
def settle_command(
    cycle: Annotated[
        str, typer.Argument(metavar="CYCLE", help="Cycle id or name, or a month: all its cycles")
    ],
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV: instruction_id,outcome,...")],
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Take finance's settlement file: payments land on the cases, the rest are findings."""
    if not file.is_file():
        raise fail(f"FILE {str(file)!r} is not a file")
    settings = load_settings()
    by = _by(settings, actor, role, f"settlement file {file.name}")
    with _payroll(settings) as (casework, ledger):
        report = settle_file(casework, ledger, cycle, file, by=by)
    print_json(report.as_json() | {"finding_lines": report.findings[:100]})
    if report.findings:
        console.print(f"{len(report.findings)} finding(s): nothing was paid twice", style="yellow")
