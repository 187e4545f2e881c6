"""Deadlines of every case: pending, passed (the clock recorded it), done or cancelled.

The rows are folded from the log by domain.deadlines.DeadlineBook, one row per case and
deadline ("review_due:rural_dibao"). The projector feeds this read model (`deadline`, the
`deadlines` report); the clock (processes/clock.py) folds the same rows into its own table
(`clock_deadline`) straight from the log, and fires the pending ones whose time has come.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from domain.case import Case
from domain.deadlines import DeadlineBook
from projections.folding import Batch, FoldingReadModel, Row, Table, folds
from projections.regions import CHINA_TIME, Criteria, Report

__all__ = ["Deadlines", "approver_queue", "deadline_ddl", "deadline_table", "report"]

# Events that open, settle or cancel a deadline, and the clock's own (which mark it passed).
_FOLDED = (
    Case.Discovered,
    Case.VerificationAssigned,
    Case.Verified,
    Case.NoticePublished,
    Case.ObjectionRaised,
    Case.Enrolled,
    Case.Reviewed,
    Case.Exited,
    Case.EmergencyReliefGranted,
    Case.EmergencyReliefRegularised,
    Case.Closed,
    Case.DeadlineWarned,
    Case.Escalated,
    Case.ReviewFellDue,
    Case.ReadyForEnrolment,
)


_PASSED = (Case.DeadlineWarned, Case.Escalated, Case.ReviewFellDue, Case.ReadyForEnrolment)


def deadline_table(name: str) -> Table:
    """The deadline rows' table, by name (the read model's and the clock's own)."""
    return Table(
        name,
        (
            ("case_id", "uuid"),
            ("deadline", "text"),
            ("kind", "text"),
            ("region", "text"),
            ("due_at", "timestamptz"),
            ("basis", "text"),
            ("state", "text"),
            ("done_at", "timestamptz"),
            ("passed_event", "text"),
            ("passed_at", "timestamptz"),
        ),
        key=("case_id", "deadline"),
        # Not loaded for the clock's own events alone: see Deadlines._evolve.
        loaded_by=frozenset(_FOLDED) - {Case.Discovered} - set(_PASSED),
    )


def deadline_ddl(table: str) -> tuple[str, ...]:
    return (
        f"CREATE TABLE IF NOT EXISTS {{schema}}.{table} (case_id uuid NOT NULL, "
        "deadline text NOT NULL, kind text NOT NULL, region text NOT NULL, "
        "due_at timestamptz NOT NULL, basis text NOT NULL, state text NOT NULL, "
        "done_at timestamptz, passed_event text, passed_at timestamptz, "
        "PRIMARY KEY (case_id, deadline))",
        # The clock asks "what is pending and due by now?": only pending rows, by due time.
        f"CREATE INDEX IF NOT EXISTS {table}_pending_due ON {{schema}}.{table} (due_at) "
        "WHERE state = 'pending'",
    )


class Deadlines(FoldingReadModel):
    """Every case's deadlines, as domain.deadlines computes them from its events."""

    name = "deadlines"
    TABLE: ClassVar[Table] = deadline_table("deadline")
    tables: ClassVar = ("deadline",)
    state_tables: ClassVar = (TABLE,)
    ddl: ClassVar = deadline_ddl("deadline")
    book: ClassVar[DeadlineBook] = DeadlineBook()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_case: dict[int, dict[str, Row]] = {}
        self._marks: list[tuple[Any, ...]] = []
        # Row by row on the primary key (executemany pipelines them): a join with an unnest
        # of the batch was planned as a hash join over the whole table, and a plain
        # "state = 'pending' AND due_at = %s" drew the planner to the partial due-time
        # index, where thousands of deadlines share a due time (the end of a day). The
        # CASE keeps the same condition out of the planner's reach.
        self._mark = self.sql(
            f"UPDATE {{schema}}.{self.TABLE.name} SET state = 'passed', passed_event = %s, "
            "passed_at = %s WHERE case_id = %s AND deadline = %s "
            "AND CASE WHEN state = 'pending' THEN due_at = %s ELSE false END"
        )

    def flush_batch(self, curs: Cursor[DictRow]) -> None:
        self._by_case, self._marks = {}, []
        try:
            super().flush_batch(curs)
            if self._marks:
                curs.executemany(self._mark, self._marks)
        finally:
            self._by_case, self._marks = {}, []

    def _load(self, curs: Cursor[DictRow], batch: Batch, picked: Any) -> None:
        super()._load(curs, batch, picked)
        by_case = self._by_case
        for (case_key, deadline), row in batch.rows[self.TABLE.name].items():
            by_case.setdefault(case_key, {})[deadline] = row

    @folds(*_FOLDED)
    def _evolve(self, event: Any, batch: Batch) -> None:
        case_id = event.originator_id
        rows = self._by_case.get(case_id.int)
        if rows is None and isinstance(event, Case.DeadlinePassed):
            # A case whose only events in the batch are the clock's (its read-back): the
            # row turns "passed" by one set-based UPDATE with the same condition as
            # DeadlineBook's, instead of loading and rewriting every such case's rows.
            self._marks.append(
                (type(event).__name__, event.timestamp, case_id, event.deadline, event.due_at)
            )
            return
        if rows is None:
            rows = self._by_case[case_id.int] = {}
        for deadline in self.book.evolve(rows, case_id, event):
            batch.put(self.TABLE, rows[deadline])


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Deadlines per region and kind: open, due within 7 days, overdue, escalated, done late."""
    now = datetime.combine(criteria.today, time(), CHINA_TIME)
    curs.execute(
        SQL(
            "SELECT {group} AS region, kind, "
            "count(*) FILTER (WHERE state = 'pending' AND due_at > {now}) AS open, "
            "count(*) FILTER (WHERE state = 'pending' AND due_at > {now} "
            "AND due_at <= {soon}) AS due_soon, "
            "count(*) FILTER (WHERE state = 'pending' AND due_at <= {now}) AS overdue, "
            "count(*) FILTER (WHERE state = 'passed') AS passed, "
            "count(*) FILTER (WHERE passed_event = 'Escalated') AS escalated, "
            "count(*) FILTER (WHERE done_at IS NOT NULL AND done_at <= due_at) AS done_in_time, "
            "count(*) FILTER (WHERE done_at > due_at) AS done_late, "
            "count(*) FILTER (WHERE state = 'cancelled') AS cancelled "
            "FROM {schema}.deadline WHERE {region} AND {months} GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(
            group=criteria.group_sql(),
            now=Literal(now),
            soon=Literal(now + timedelta(days=7)),
            schema=Identifier(schema),
            region=criteria.region_sql(),
            months=criteria.moments_sql("due_at"),
        )
    )
    return Report(
        title=f"Deadlines as of {criteria.today.isoformat()}",
        columns=[
            "region", "kind", "open", "due_soon", "overdue", "passed", "escalated",
            "done_in_time", "done_late", "cancelled",
        ],
        rows=[dict(row) for row in curs.fetchall()],
        notes=[
            "overdue: due and still pending (the clock has not acted yet); passed: recorded "
            "by the clock; months filter the month a deadline falls due.",
        ],
    )  # fmt: skip


def approver_queue(curs: Cursor[DictRow], schema: str, region: str | None = None) -> list[Row]:
    """Cases whose public notice ended without objection and that await enrolment."""
    criteria = Criteria(region=region)
    curs.execute(
        SQL(
            "SELECT case_id, region, due_at AS notice_ended_at, passed_at "
            "FROM {schema}.deadline WHERE kind = 'notice_ended' AND state = 'passed' "
            "AND done_at IS NULL AND {region} ORDER BY due_at, case_id"
        ).format(schema=Identifier(schema), region=criteria.region_sql())
    )
    return [dict(row) for row in curs.fetchall()]
