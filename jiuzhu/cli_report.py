"""`jiuzhu report NAME`: the reporting read models as tables, CSV or JSON, with small charts."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, TextIO

import typer
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from rich.table import Table

from domain.errors import PermissionDeniedError
from domain.roles import Role, may_read
from jiuzhu.cli_common import (
    ActorOpt,
    RoleOpt,
    Who,
    console,
    fail,
    load_settings,
    print_json,
    user_errors,
    who,
)
from jiuzhu.runtime import endpoints
from projections import (
    deadlines,
    funnel,
    headline,
    payments_ledger,
    payroll_cycles,
    programme_roll,
    screening,
    stacked_relief,
    time_to_support,
    verification_tasks,
)
from projections.base import read_model_datastore
from projections.regions import Criteria, Level, Report, normalise_region

__all__ = [
    "REPORTS",
    "ReportUnavailableError",
    "criteria_for",
    "read_report",
    "render",
    "report",
    "report_json",
    "write_csv",
]

Reporter = Callable[[Cursor[DictRow], str, Criteria], Report]
REPORTS: dict[str, Reporter] = {
    "funnel": funnel.report,
    "verification_tasks": verification_tasks.report,
    "payments": payments_ledger.report,
    "time_to_support": time_to_support.report,
    "stacked_relief": stacked_relief.report,
    "programme_roll": programme_roll.report,
    "headline": headline.report,
    "screening": screening.report,
}
REPORTS["deadlines"] = deadlines.report  # the clock's deadlines: open, due soon, escalated
REPORTS["payroll"] = payroll_cycles.report
_SPARKS = "▁▂▃▄▅▆▇█"


class Format(StrEnum):
    """How a report is printed."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def _month(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    year, _, month = value.partition("-")
    if not (len(year) == 4 and year.isdigit() and month.isdigit() and 1 <= int(month) <= 12):
        raise ValueError(f"{option} {value!r} is not a month like 2023-06")
    return f"{year}-{int(month):02d}"


def criteria_for(
    region: str | None, first: str | None, last: str | None, level: Level, *, names: str = "--"
) -> Criteria:
    """A report's criteria from its options (CLI) or query (API); ValueError naming one.

    `names` prefixes the option names in errors: "--" for --from, "" for from.
    """
    return Criteria(
        region=normalise_region(region) if region else None,
        first_month=_month(first, f"{names}from"),
        last_month=_month(last, f"{names}to"),
        level=level,
    )


class ReportUnavailableError(Exception):
    """A report could not be read (its read model not built yet, say): the one line why."""


def read_report(datastore: PostgresDatastore, schema: str, name: str, criteria: Criteria) -> Report:
    """A report from the read models in a schema (ReportUnavailableError saying why not)."""
    if name not in REPORTS:
        raise ReportUnavailableError(f"unknown report {name!r}; choose one of {', '.join(REPORTS)}")
    try:
        with datastore.transaction(commit=False) as curs:
            return REPORTS[name](curs, schema, criteria)
    except Exception as error:  # a read model not built yet: say which, in one line
        raise ReportUnavailableError(
            f"cannot read the {name} report from schema {schema!r}: {error}"
        ) from None


def report_json(result: Report) -> dict[str, Any]:
    """A report as JSON values: its title and rows."""
    return {"title": result.title, "rows": [_plain(row) for row in result.rows]}


def write_csv(result: Report, file: TextIO) -> None:
    """A report as CSV with a header line."""
    writer = csv.DictWriter(file, fieldnames=result.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_plain(row) for row in result.rows)


@user_errors
def report(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(REPORTS)}", show_default=False)],
    region: Annotated[
        str | None, typer.Option("--region", help="County, city or province code: 610523, 6105, 61")
    ] = None,
    first: Annotated[
        str | None, typer.Option("--from", help="First business month, 2023-01")
    ] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last business month, 2023-12")] = None,
    level: Annotated[
        Level, typer.Option("--by", help="Roll regions up to this level")
    ] = Level.COUNTY,
    output: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.TABLE,
    schema: Annotated[
        str | None, typer.Option(help="Schema of the read models (default: JIUZHU_DB_SCHEMA)")
    ] = None,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Print a report from the read models: funnel, tasks, payments, time to support, ..."""
    if name not in REPORTS:
        raise fail(f"unknown report {name!r}; choose one of {', '.join(REPORTS)}")
    try:
        criteria = criteria_for(region, first, last, level)
    except ValueError as error:
        raise fail(str(error)) from None
    settings = load_settings()
    _authorise(who(settings, actor, role))
    with endpoints(settings) as ends:
        schema = schema or settings.db_schema
        datastore = read_model_datastore(ends.database_url, schema=schema, pool_size=1)
        try:
            result = read_report(datastore, schema, name, criteria)
        except ReportUnavailableError as error:
            raise fail(str(error)) from None
        finally:
            datastore.close()
    render(result, output)


def _authorise(person: Who) -> None:
    """Reports are read as the API reads them (api/routes/reports.py): by a reader."""
    if person.role not in set(Role) or not may_read(Role(person.role), "read_history"):
        raise PermissionDeniedError(person.actor, person.role, "read_history")


def render(result: Report, output: Format) -> None:
    """Print a report in the chosen format."""
    if output is Format.JSON:
        print_json(report_json(result))
    elif output is Format.CSV:
        write_csv(result, sys.stdout)
    else:
        _table(result)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "—"
    if column.endswith("_fen"):
        return f"¥{int(value) / 100:,.2f}"  # money is kept in fen, shown in yuan
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(result: Report) -> None:
    table = Table(title=result.title, title_justify="left")
    for column in result.columns:
        numeric = any(isinstance(row.get(column), int | Decimal) for row in result.rows)
        heading = column.removesuffix("_fen") + (" (yuan)" if column.endswith("_fen") else "")
        table.add_column(heading.replace("_", " "), justify="right" if numeric else "left")
    for row in result.rows:
        table.add_row(*(_cell(column, row.get(column)) for column in result.columns))
    console.print(table)
    if not result.rows:
        console.print("[dim]no rows: nothing recorded for these criteria yet[/]")
    if result.bars:
        _bars(result.bars)
    if result.series:
        _sparkline(result.series)
    for note in result.notes:
        console.print(f"[dim]{note}[/]")


def _bars(bars: list[tuple[str, int]], width: int = 40) -> None:
    top = max((count for _, count in bars), default=0) or 1
    label = max(len(name) for name, _ in bars)
    for name, count in bars:
        bar = "█" * round(width * count / top)
        console.print(f"{name.replace('_', ' '):>{label}} [cyan]{bar}[/] {count:,}")


def _sparkline(series: list[tuple[str, int]]) -> None:
    values = [value for _, value in series]
    low, high = min(values), max(values)
    span = (high - low) or 1
    line = "".join(_SPARKS[round((v - low) / span * (len(_SPARKS) - 1))] for v in values)
    console.print(
        f"monthly payments {series[0][0]} [green]{line}[/] {series[-1][0]}  "
        f"(¥{low / 100:,.0f} – ¥{high / 100:,.0f} a month)"
    )
