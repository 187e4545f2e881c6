"""case_status: one row per case with where it stands, its region, programmes and money paid.

No personal data: names, id numbers and addresses stay in the event store. Folded per
batch like the reporting read models (projections/folding.py): the rows of the cases a
batch touches are loaded once, every event of a case evolves its row, and each touched
row is written once (binary COPY into staging + one INSERT ... ON CONFLICT).
"""

from __future__ import annotations

from typing import Any, ClassVar

from domain.case import Case
from domain.values import ONE_OFF
from projections.folding import Batch, FoldingReadModel, Row, Table, folds

__all__ = ["CASES", "CASE_EVENTS", "CaseStatus", "status_of"]


def _case_events() -> tuple[type, ...]:
    """Every concrete Case event class: each one moves last_event_at and version."""
    found: list[type] = []
    pending: list[type] = [Case.Event]
    while pending:
        cls = pending.pop()
        subclasses: list[type] = cls.__subclasses__()
        for sub in subclasses:
            if sub not in found:
                found.append(sub)
                pending.append(sub)
    return tuple(found)


CASE_EVENTS = _case_events()
_CHANGING = frozenset(
    {
        Case.Discovered,
        Case.Verified,
        Case.Enrolled,
        Case.Exited,
        Case.Paid,
        Case.EmergencyReliefGranted,
        Case.Closed,
        Case.VerificationAssigned,
    }
)
CASES = Table(
    "case_status",
    (
        ("case_id", "uuid"),
        ("household_id", "text"),
        ("region", "text"),
        ("county_code", "text"),
        ("city_code", "text"),
        ("province_code", "text"),
        ("channel", "text"),
        ("status", "text"),
        ("verdict", "text"),
        ("programmes", "text[]"),
        ("paid_total_fen", "bigint"),
        ("payments", "integer"),
        ("discovered_at", "timestamptz"),
        ("verified_at", "timestamptz"),
        ("first_enrolled_at", "timestamptz"),
        ("first_paid_at", "timestamptz"),
        ("closed_at", "timestamptz"),
        ("last_event_at", "timestamptz"),
        ("version", "integer"),
    ),
    loaded_by=frozenset(CASE_EVENTS) - {Case.Discovered},
)


def status_of(row: Row, *, assigned: bool) -> str:
    """Where the case stands: the same meaning as Case.status in the domain."""
    if row["closed_at"] is not None:
        return "closed"
    if row["programmes"]:
        return "enrolled"
    if row["verdict"] is not None:
        return "verified"
    return "verifying" if assigned else "discovered"


class CaseStatus(FoldingReadModel):
    """One row per case: status, region codes, programmes, money paid, milestones."""

    name = "case_status"
    tables: ClassVar = ("case_status",)
    state_tables: ClassVar = (CASES,)
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

    @folds(*(kind for kind in CASE_EVENTS if kind not in _CHANGING))
    def _other(self, event: Case.Event, batch: Batch) -> None:
        """Events that change no column but the last event's time and the version."""
        row = batch.changing(CASES, event.originator_id)
        if row is not None:
            row["last_event_at"] = event.timestamp
            row["version"] = event.originator_version

    def _moved(self, row: Row, event: Case.Event, *, assigned: bool = False) -> None:
        status = row["status"]
        row["status"] = status_of(row, assigned=assigned or status != "discovered")
        row["last_event_at"] = event.timestamp
        row["version"] = event.originator_version

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        region = event.region
        row: dict[str, Any] = {
            "case_id": event.originator_id,
            "household_id": event.household_id,
            "region": region,
            "county_code": region[:6],
            "city_code": region[:4],
            "province_code": region[:2],
            "channel": event.channel,
            "status": "discovered",
            "verdict": None,
            "programmes": [],
            "paid_total_fen": 0,
            "payments": 0,
            "discovered_at": event.occurred_at,
            "verified_at": None,
            "first_enrolled_at": None,
            "first_paid_at": None,
            "closed_at": None,
            "last_event_at": event.timestamp,
            "version": event.originator_version,
        }
        batch.put(CASES, row)

    @folds(Case.VerificationAssigned)
    def _assigned(self, event: Case.VerificationAssigned, batch: Batch) -> None:
        row = batch.changing(CASES, event.originator_id)
        if row is not None:
            self._moved(row, event, assigned=True)

    @folds(Case.Verified)
    def _verified(self, event: Case.Verified, batch: Batch) -> None:
        row = batch.changing(CASES, event.originator_id)
        if row is not None:
            row["verdict"] = event.verdict
            row["verified_at"] = event.occurred_at
            self._moved(row, event)

    @folds(Case.Enrolled)
    def _enrolled(self, event: Case.Enrolled, batch: Batch) -> None:
        row = batch.changing(CASES, event.originator_id)
        if row is not None:
            row["programmes"] = sorted({*row["programmes"], event.programme})
            if row["first_enrolled_at"] is None:
                row["first_enrolled_at"] = event.occurred_at
            self._moved(row, event)

    @folds(Case.Exited)
    def _exited(self, event: Case.Exited, batch: Batch) -> None:
        row = batch.changing(CASES, event.originator_id)
        if row is not None:
            row["programmes"] = [p for p in row["programmes"] if p != event.programme]
            self._moved(row, event)

    @folds(Case.Paid, Case.EmergencyReliefGranted)
    def _paid(self, event: Case.Paid | Case.EmergencyReliefGranted, batch: Batch) -> None:
        row = batch.changing(CASES, event.originator_id)
        if row is not None:
            row["paid_total_fen"] += event.amount_fen
            row["payments"] += 1
            if getattr(event, "period", None) == ONE_OFF:  # the grant's enrolment ends with it
                row["programmes"] = [p for p in row["programmes"] if p != event.programme]
            if row["first_paid_at"] is None:
                row["first_paid_at"] = event.occurred_at
            self._moved(row, event)

    @folds(Case.Closed)
    def _closed(self, event: Case.Closed, batch: Batch) -> None:
        row = batch.changing(CASES, event.originator_id)
        if row is not None:
            row["closed_at"] = event.occurred_at
            self._moved(row, event)
