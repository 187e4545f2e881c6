"""case_status: one row per case with where it stands, its region, programmes and money paid.

No personal data: names, id numbers and addresses stay in the event store. A batch is
folded in memory: the rows of the cases it touches are loaded once, every event evolves
its row, and each touched row is written once (INSERT ... ON CONFLICT DO UPDATE).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import singledispatch, singledispatchmethod
from typing import Any, ClassVar
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow

from domain.case import Case
from projections.base import ReadModel

__all__ = ["CaseRow", "CaseStatus", "status_of"]


@dataclass(slots=True)
class CaseRow:
    """A case_status row; field order is the table's column order."""

    case_id: UUID
    household_id: str
    region: str
    county_code: str
    city_code: str
    province_code: str
    channel: str
    status: str
    verdict: str | None
    programmes: list[str] = field(default_factory=list)
    paid_total_fen: int = 0
    payments: int = 0
    discovered_at: datetime | None = None
    verified_at: datetime | None = None
    first_enrolled_at: datetime | None = None
    first_paid_at: datetime | None = None
    closed_at: datetime | None = None
    last_event_at: datetime | None = None
    version: int = 0


COLUMNS = tuple(f.name for f in fields(CaseRow))


def status_of(row: CaseRow, *, assigned: bool) -> str:
    """Where the case stands: the same meaning as Case.status in the domain."""
    if row.closed_at is not None:
        return "closed"
    if row.programmes:
        return "enrolled"
    if row.verdict is not None:
        return "verified"
    return "verifying" if assigned else "discovered"


@singledispatch
def evolve(event: Case.Event, row: CaseRow) -> None:
    """Events that change no column of case_status (services, referrals, notices...)."""


@evolve.register
def _(event: Case.Verified, row: CaseRow) -> None:
    row.verdict = event.verdict
    row.verified_at = event.occurred_at


@evolve.register
def _(event: Case.Enrolled, row: CaseRow) -> None:
    row.programmes = sorted({*row.programmes, event.programme})
    if row.first_enrolled_at is None:
        row.first_enrolled_at = event.occurred_at


@evolve.register
def _(event: Case.Exited, row: CaseRow) -> None:
    row.programmes = [p for p in row.programmes if p != event.programme]


def _paid(row: CaseRow, amount_fen: int, occurred_at: datetime) -> None:
    row.paid_total_fen += amount_fen
    row.payments += 1
    if row.first_paid_at is None:
        row.first_paid_at = occurred_at


@evolve.register
def _(event: Case.Paid, row: CaseRow) -> None:
    _paid(row, event.amount_fen, event.occurred_at)


@evolve.register
def _(event: Case.EmergencyReliefGranted, row: CaseRow) -> None:
    _paid(row, event.amount_fen, event.occurred_at)


@evolve.register
def _(event: Case.Closed, row: CaseRow) -> None:
    row.closed_at = event.occurred_at


def discovered(event: Case.Discovered) -> CaseRow:
    """The row of a case that just opened."""
    region = event.region
    return CaseRow(
        case_id=event.originator_id,
        household_id=event.household_id,
        region=region,
        county_code=region[:6],
        city_code=region[:4],
        province_code=region[:2],
        channel=event.channel,
        status="discovered",
        verdict=None,
        discovered_at=event.occurred_at,
    )


class CaseStatus(ReadModel):
    """One row per case: status, region codes, programmes, money paid, milestones."""

    name = "case_status"
    tables: ClassVar = ("case_status",)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.case_status ("
        " case_id uuid PRIMARY KEY, household_id text NOT NULL, region text NOT NULL,"
        " county_code text NOT NULL, city_code text NOT NULL, province_code text NOT NULL,"
        " channel text NOT NULL, status text NOT NULL, verdict text,"
        " programmes text[] NOT NULL, paid_total_fen bigint NOT NULL, payments int NOT NULL,"
        " discovered_at timestamptz, verified_at timestamptz, first_enrolled_at timestamptz,"
        " first_paid_at timestamptz, closed_at timestamptz, last_event_at timestamptz,"
        " version int NOT NULL)",
        "CREATE INDEX IF NOT EXISTS case_status_region ON {schema}.case_status (region, status)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        columns = ", ".join(COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        self._select_rows = self.sql(
            f"SELECT {columns} FROM {{schema}}.case_status WHERE case_id = ANY(%s)"
        )
        self._upsert_row = self.sql(
            f"INSERT INTO {{schema}}.case_status ({columns}) "
            f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
            f"ON CONFLICT (case_id) DO UPDATE SET {updates}"
        )
        self._events: list[Case.Event] = []

    def begin_batch(self) -> None:
        self._events = []

    @singledispatchmethod
    def process_event(self, event: object, curs: Cursor[DictRow]) -> None:
        """Household and receipt events change nothing here."""

    @process_event.register
    def _(self, event: Case.Event, curs: Cursor[DictRow]) -> None:
        # Folded in flush_batch, once the rows of every touched case are loaded at once.
        self._events.append(event)

    def flush_batch(self, curs: Cursor[DictRow]) -> None:
        if not self._events:
            return
        touched = list(dict.fromkeys(e.originator_id for e in self._events))
        curs.execute(self._select_rows, (touched,))
        rows = {r["case_id"]: CaseRow(**r) for r in curs.fetchall()}
        for event in self._events:
            if isinstance(event, Case.Discovered):
                rows[event.originator_id] = row = discovered(event)
            else:
                row = rows[event.originator_id]
            evolve(event, row)
            assigned = row.status != "discovered" or isinstance(event, Case.VerificationAssigned)
            row.status = status_of(row, assigned=assigned)
            row.last_event_at = event.timestamp
            row.version = event.originator_version
        values = [[getattr(rows[case_id], c) for c in COLUMNS] for case_id in touched]
        curs.executemany(self._upsert_row, values)
        self._events = []
