"""Verification tasks: one row per case, who must visit by when, and whether it was done.

Open, done and overdue are read against a day (today, or a report's day), so the table
keeps the facts (assignee, due date, when verified) and reports derive the status.
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from domain.case import Case
from domain.deadlines import DeadlineKind
from projections.folding import Batch, FoldingReadModel, Table, folds
from projections.regions import Criteria, Report, region_matches

__all__ = ["VerificationTasks", "report", "task_list"]

TASKS = Table(
    "verification_task",
    (
        ("case_id", "uuid"),
        ("region", "text"),
        ("assignee", "text"),
        ("assigned_at", "timestamptz"),
        ("due_on", "date"),
        ("assignments", "integer"),
        ("verified_at", "timestamptz"),
        ("verdict", "text"),
        ("closed_at", "timestamptz"),
        ("escalated_at", "timestamptz"),
    ),
    loaded_by=frozenset({Case.VerificationAssigned, Case.Verified, Case.Closed, Case.Escalated}),
)


class VerificationTasks(FoldingReadModel):
    """The verification visit of each case: assignee, due date, outcome."""

    name = "verification_tasks"
    tables: ClassVar = ("verification_task",)
    state_tables: ClassVar = (TASKS,)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.verification_task (case_id uuid PRIMARY KEY, "
        "region text NOT NULL, assignee text, assigned_at timestamptz, due_on date, "
        "assignments integer NOT NULL, verified_at timestamptz, verdict text, "
        "closed_at timestamptz, escalated_at timestamptz)",
        # Tables made before the clock existed get the column (a rebuild fills it).
        "ALTER TABLE {schema}.verification_task ADD COLUMN IF NOT EXISTS escalated_at timestamptz",
        "CREATE INDEX IF NOT EXISTS verification_task_due "
        "ON {schema}.verification_task (due_on) WHERE verified_at IS NULL",
    )

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        batch.put(
            TASKS,
            {
                "case_id": event.originator_id,
                "region": event.region,
                "assignee": None,
                "assigned_at": None,
                "due_on": None,
                "assignments": 0,
                "verified_at": None,
                "verdict": None,
                "closed_at": None,
                "escalated_at": None,
            },
        )

    @folds(Case.VerificationAssigned)
    def _assigned(self, event: Case.VerificationAssigned, batch: Batch) -> None:
        task = batch.row(TASKS, event.originator_id)
        if task is None:
            return
        # A reassignment replaces the assignee and due date; every assignment is a task issued.
        task["assignee"] = event.assignee
        task["assigned_at"] = event.occurred_at
        task["due_on"] = event.due_on
        task["assignments"] += 1
        batch.touch(TASKS, event.originator_id)

    @folds(Case.Verified)
    def _verified(self, event: Case.Verified, batch: Batch) -> None:
        task = batch.row(TASKS, event.originator_id)
        if task is None:
            return
        # The task was done at the first visit; a later one only updates the verdict.
        if task["verified_at"] is None:
            task["verified_at"] = event.occurred_at
        task["verdict"] = event.verdict
        batch.touch(TASKS, event.originator_id)

    filtered: ClassVar = frozenset({Case.Escalated})

    def keeps(self, event: Any) -> bool:
        # Of escalations only the clock's "visit overdue" ones.
        return bool(event.kind == DeadlineKind.VERIFICATION_OVERDUE.value)

    @folds(Case.Escalated)
    def _escalated(self, event: Case.Escalated, batch: Batch) -> None:
        task = batch.changing(TASKS, event.originator_id)
        if task is not None and task["escalated_at"] is None:
            task["escalated_at"] = event.occurred_at

    @folds(Case.Closed)
    def _closed(self, event: Case.Closed, batch: Batch) -> None:
        task = batch.row(TASKS, event.originator_id)
        if task is None:
            return
        task["closed_at"] = event.occurred_at
        batch.touch(TASKS, event.originator_id)


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Tasks per region and assignee: open, overdue against the due date, done, done late."""
    curs.execute(
        SQL(
            "SELECT {group} AS region, coalesce(assignee, '(unassigned)') AS assignee, "
            "count(*) AS cases, sum(assignments)::bigint AS tasks_issued, "
            "count(*) FILTER (WHERE assignee IS NOT NULL AND verified_at IS NULL "
            "AND closed_at IS NULL) AS open, "
            "count(*) FILTER (WHERE verified_at IS NULL AND closed_at IS NULL "
            "AND due_on < {today}) AS overdue, "
            "count(*) FILTER (WHERE verified_at IS NOT NULL) AS done, "
            "count(*) FILTER (WHERE (verified_at AT TIME ZONE 'Asia/Shanghai')::date > due_on) "
            "AS done_late, "
            "count(*) FILTER (WHERE verified_at IS NULL AND closed_at IS NOT NULL) AS cancelled, "
            "count(*) FILTER (WHERE escalated_at IS NOT NULL) AS escalated "
            "FROM {schema}.verification_task WHERE {region} AND "
            "(assigned_at IS NULL OR {months}) GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(
            group=criteria.group_sql(),
            today=Literal(criteria.today),
            schema=Identifier(schema),
            region=criteria.region_sql(),
            months=criteria.moments_sql("assigned_at"),
        )
    )
    return Report(
        title=f"Verification tasks as of {criteria.today.isoformat()}",
        columns=[
            "region", "assignee", "cases", "tasks_issued", "open", "overdue", "done",
            "done_late", "cancelled", "escalated",
        ],
        rows=[dict(row) for row in curs.fetchall()],
        notes=[
            "Months filter the month a task was (last) assigned; escalated: the clock sent "
            "the overdue visit to the county.",
        ],
    )  # fmt: skip


def task_list(
    curs: Cursor[DictRow],
    schema: str,
    *,
    today: date,
    assignee: str | None = None,
    region: str | None = None,
    overdue: bool | None = None,
    include_done: bool = False,
    limit: int = 500,
) -> list[dict[str, object]]:
    """Verification tasks one by one, overdue first then by due date (an inbox, a worklist).

    Open means assigned, not yet verified and the case not closed; overdue means open and
    past its due date on `today`. `region` is a 2, 4 or 6 digit prefix (already normalised).
    """
    conditions = [region_matches("region", region)]
    if not include_done:
        conditions.append(SQL("verified_at IS NULL AND closed_at IS NULL"))
    if assignee is not None:
        conditions.append(SQL("assignee = {0}").format(Literal(assignee)))
    if overdue is not None:
        is_overdue = SQL("(verified_at IS NULL AND closed_at IS NULL AND due_on < {0})").format(
            Literal(today)
        )
        conditions.append(
            is_overdue if overdue else SQL("NOT coalesce({0}, false)").format(is_overdue)
        )
    curs.execute(
        SQL(
            "SELECT case_id, region, assignee, assigned_at, due_on, assignments, verified_at,"
            " verdict, closed_at, (verified_at IS NULL AND closed_at IS NULL AND due_on < {today})"
            " AS overdue FROM {schema}.verification_task WHERE {where}"
            " ORDER BY overdue DESC, due_on NULLS LAST, case_id LIMIT {limit}"
        ).format(
            today=Literal(today),
            schema=Identifier(schema),
            where=SQL(" AND ").join(conditions),
            limit=Literal(limit),
        )
    )
    return [{**row, "overdue": bool(row["overdue"])} for row in curs.fetchall()]
