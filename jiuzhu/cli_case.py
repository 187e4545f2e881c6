"""`jiuzhu case`: a case as it stands (or stood), and its history event by event."""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.table import Table

from domain.case import Case
from domain.deadlines import PENDING, DeadlineBook
from jiuzhu.cli_audit import reading_histories
from jiuzhu.cli_common import (
    ActorOpt,
    RoleOpt,
    console,
    fail,
    parse_case_id,
    parse_moment,
    print_json,
    user_errors,
)
from jiuzhu.narrate import CHINA_TIME, case_view, event_row, yuan

__all__ = ["app"]

app = typer.Typer(help="Look at one case: its state and its history.", no_args_is_help=True)

CaseIdArg = Annotated[str, typer.Argument(metavar="CASE_ID", help="The case's id (a UUID)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")]
AS_OF_HELP = "As things stood on a date (or date-time): by when they happened (occurred_at)"
KNOWN_AT_HELP = "As the record stood at a date-time: by when things were recorded"


def _load(
    case_id: UUID,
    version: int | None,
    as_of: datetime | None,
    known_at: datetime | None,
    reader: tuple[str | None, str | None],
) -> tuple[Case, bool, list[Case.Event]]:
    """The case, whether the person may see its personal data, and the events shown."""
    with reading_histories(*reader) as (casework, personal):
        if as_of is not None or known_at is not None:
            case = casework.case_at(case_id, as_of=as_of, known_at=known_at)
        else:
            case = casework.get_case(case_id, version=version)
        events = [
            e
            for e in casework.history(case_id)
            if e.originator_version <= case.version
            and (known_at is None or e.timestamp <= known_at)
            and (as_of is None or e.occurred_at <= as_of)
        ]
        return case, personal, events


@app.command("show")
@user_errors
def show(
    case_id: CaseIdArg,
    version: Annotated[int | None, typer.Option(min=1, help="As it stood at this version")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    known_at: Annotated[str | None, typer.Option("--known-at", help=KNOWN_AT_HELP)] = None,
    as_json: JsonOpt = False,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Show a case as it stands now, at a version, or by the two clocks (--as-of, --known-at)."""
    if version is not None and (as_of is not None or known_at is not None):
        raise fail("give --version or --as-of/--known-at, not both")
    happened = parse_moment(as_of) if as_of else None
    recorded = parse_moment(known_at, "--known-at") if known_at else None
    case, with_personal, events = _load(
        parse_case_id(case_id), version, happened, recorded, (actor, role)
    )
    view = case_view(case, with_personal=with_personal)
    view["deadlines"] = pending_deadlines(case.id, events)
    if as_json:
        print_json(view)
        return
    _print_case(view)


@app.command("history")
@user_errors
def history(
    case_id: CaseIdArg, as_json: JsonOpt = False, actor: ActorOpt = None, role: RoleOpt = None
) -> None:
    """Every event of a case in order: who, why, what caused it, when."""
    with reading_histories(actor, role) as (casework, _):
        rows = [event_row(e) for e in casework.history(parse_case_id(case_id))]
    if as_json:
        print_json(rows)
        return
    console.print(f"[bold]History of case {case_id}[/] ({len(rows)} events)")
    for row in rows:
        occurred = row["occurred_at"].astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M")
        recorded = row["recorded_at"].astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S")
        console.print(
            f"[bold cyan]{row['version']:>4}[/] [bold]{row['type']}[/]  {occurred}"
            f"  [dim](recorded {recorded})[/]",
            highlight=False,
        )
        console.print(
            f"      {row['actor']} ({row['role']}) · {row['reason']} · "
            f"[dim]caused by {row['causation_id']}[/]",
            highlight=False,
        )
        console.print(f"      {row['summary']}", style="green", highlight=False)


def _print_case(view: dict[str, Any]) -> None:
    table = Table(title=f"Case {view['case_id']} (version {view['version']})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    personal = view["personal"]
    for field, value in (
        ("status", view["status"]),
        ("household", f"{view['household_id']} ({view['household_size']} people)"),
        ("head of household", ", ".join(v for v in personal.values() if v) or "-"),
        ("region", view["region"]),
        ("channel", view["channel"]),
        ("signals", "; ".join(view["signals"]) or "-"),
        ("discovered", view["discovered_at"].astimezone(CHINA_TIME).strftime("%Y-%m-%d")),
        ("verification", f"{view['assignee'] or '-'} due {view['verification_due'] or '-'}"),
        ("consent", "given" if view["consent"] else "not given"),
        ("verdict", view["verdict"] or "-"),
        ("paid in total", yuan(view["paid_total_fen"])),
        ("services delivered", str(view["services_delivered"])),
        (
            "closed",
            f"{view['closed_at']:%Y-%m-%d} ({view['closed_reason']})" if view["closed_at"] else "-",
        ),
    ):
        table.add_row(field, value)
    console.print(table)
    if view["enrolments"]:
        enrolments = Table(title="Enrolments")
        for column in ("programme", "department", "amount", "basis", "from", "review due", "ended"):
            enrolments.add_column(column)
        for programme, e in view["enrolments"].items():
            enrolments.add_row(
                programme,
                e["department"],
                yuan(e["amount_fen"]),
                e["basis"],
                e["effective_from"].isoformat(),
                e["review_due"].isoformat(),
                e["ended_on"].isoformat() if e["ended_on"] else "-",
            )
        console.print(enrolments)
    if view["deadlines"]:
        deadlines = Table(title="Pending deadlines (China time)")
        for column in ("deadline", "due", "basis"):
            deadlines.add_column(column)
        for d in view["deadlines"]:
            due = d["due_at"].astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M")
            deadlines.add_row(d["deadline"], due, d["basis"])
        console.print(deadlines)


def pending_deadlines(case_id: UUID, events: list[Case.Event]) -> list[dict[str, Any]]:
    """The case's pending deadlines, computed from its events as the clock computes them."""
    rows: dict[str, dict[str, Any]] = {}
    book = DeadlineBook()
    for event in events:
        book.evolve(rows, case_id, event)
    pending = sorted((r for r in rows.values() if r["state"] == PENDING), key=itemgetter("due_at"))
    return [{k: r[k] for k in ("deadline", "kind", "due_at", "basis")} for r in pending]
