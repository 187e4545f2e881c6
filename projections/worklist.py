"""worklist: what waits for a person on each open case (the workbench's inbox and approvals).

One row per case: the programmes the assessment panel decided and not yet enrolled (an
approver's enrolment queue), who assessed them (an approver does not approve their own
assessment), when the public notice ends, and the emergency grants not yet regularised.
Visits and reviews come from verification_tasks and programme_roll, referrals from
stacked_relief: this table keeps only what no other read model keeps. No personal data.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from domain.case import Case
from domain.values import ONE_OFF
from projections.folding import Batch, FoldingReadModel, Row, Table, folds

__all__ = ["WORKLIST", "Worklist"]

WORKLIST = Table(
    "worklist_case",
    (
        ("case_id", "uuid"),
        ("household_id", "text"),
        ("region", "text"),
        ("consent", "boolean"),
        ("verdict", "text"),
        ("assessed_by", "text"),
        ("assessed_at", "timestamptz"),
        ("pending_programmes", "text[]"),
        ("enrolled", "text[]"),
        ("notice_ends_on", "date"),
        ("objection_open", "boolean"),
        ("emergency_open", "text[]"),
        ("emergency_since", "timestamptz"),
        ("closed_at", "timestamptz"),
    ),
    loaded_by=frozenset(
        {
            Case.ConsentGiven,
            Case.ConsentWithdrawn,
            Case.Verified,
            Case.Assessed,
            Case.NoticePublished,
            Case.ObjectionRaised,
            Case.Enrolled,
            Case.Exited,
            Case.Paid,  # one-off payments only (Worklist.keeps)
            Case.EmergencyReliefGranted,
            Case.EmergencyReliefRegularised,
            Case.Closed,
        }
    ),
)


class Worklist(FoldingReadModel):
    """Per open case: the enrolments and emergency grants awaiting an approver, the notice."""

    name = "worklist"
    tables: ClassVar = ("worklist_case",)
    state_tables: ClassVar = (WORKLIST,)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.worklist_case (case_id uuid PRIMARY KEY, "
        "household_id text NOT NULL, region text NOT NULL, consent boolean NOT NULL, "
        "verdict text, assessed_by text, assessed_at timestamptz, "
        "pending_programmes text[] NOT NULL, enrolled text[] NOT NULL, notice_ends_on date, "
        "objection_open boolean NOT NULL, emergency_open text[] NOT NULL, "
        "emergency_since timestamptz, closed_at timestamptz)",
        # The approver's queue reads only the open cases with something pending.
        "CREATE INDEX IF NOT EXISTS worklist_waiting ON {schema}.worklist_case (region) "
        "WHERE closed_at IS NULL AND (cardinality(pending_programmes) > 0 "
        "OR cardinality(emergency_open) > 0)",
    )

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        batch.put(
            WORKLIST,
            {
                "case_id": event.originator_id,
                "household_id": event.household_id,
                "region": event.region,
                "consent": False,
                "verdict": None,
                "assessed_by": None,
                "assessed_at": None,
                "pending_programmes": [],
                "enrolled": [],
                "notice_ends_on": None,
                "objection_open": False,
                "emergency_open": [],
                "emergency_since": None,
                "closed_at": None,
            },
        )

    def _row(self, event: Case.Event, batch: Batch) -> Row | None:
        return batch.changing(WORKLIST, event.originator_id)

    @folds(Case.ConsentGiven, Case.ConsentWithdrawn)
    def _consent(self, event: Case.ConsentGiven | Case.ConsentWithdrawn, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["consent"] = isinstance(event, Case.ConsentGiven)

    @folds(Case.Verified)
    def _verified(self, event: Case.Verified, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["verdict"] = event.verdict

    @folds(Case.Assessed)
    def _assessed(self, event: Case.Assessed, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            decided = sorted({str(m["programme"]) for m in event.measures})
            row["pending_programmes"] = [p for p in decided if p not in row["enrolled"]]
            row["assessed_by"] = event.actor
            row["assessed_at"] = event.occurred_at
            row["objection_open"] = False

    @folds(Case.NoticePublished)
    def _notice(self, event: Case.NoticePublished, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["notice_ends_on"] = event.starts_on + timedelta(days=event.days)
            row["objection_open"] = False

    @folds(Case.ObjectionRaised)
    def _objection(self, event: Case.ObjectionRaised, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["objection_open"] = True

    @folds(Case.Enrolled)
    def _enrolled(self, event: Case.Enrolled, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["enrolled"] = sorted({*row["enrolled"], event.programme})
            row["pending_programmes"] = [
                p for p in row["pending_programmes"] if p != event.programme
            ]

    @folds(Case.Exited)
    def _exited(self, event: Case.Exited, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["enrolled"] = [p for p in row["enrolled"] if p != event.programme]

    filtered: ClassVar = frozenset({Case.Paid})

    def keeps(self, event: Any) -> bool:
        # A one-off grant's enrolment ends with its one payment (domain rule since round 2).
        return bool(event.period == ONE_OFF)

    @folds(Case.Paid)
    def _paid_once(self, event: Case.Paid, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["enrolled"] = [p for p in row["enrolled"] if p != event.programme]

    @folds(Case.EmergencyReliefGranted)
    def _granted(self, event: Case.EmergencyReliefGranted, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            if not row["emergency_open"]:
                row["emergency_since"] = event.occurred_at
            row["emergency_open"] = [*row["emergency_open"], event.grant_id]

    @folds(Case.EmergencyReliefRegularised)
    def _regularised(self, event: Case.EmergencyReliefRegularised, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["emergency_open"] = [g for g in row["emergency_open"] if g != event.grant_id]
            if not row["emergency_open"]:
                row["emergency_since"] = None

    @folds(Case.Closed)
    def _closed(self, event: Case.Closed, batch: Batch) -> None:
        if (row := self._row(event, batch)) is not None:
            row["closed_at"] = event.occurred_at
