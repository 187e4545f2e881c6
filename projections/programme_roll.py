"""The programme roll: who is enrolled in which programme, for how much, and reviews due.

One row per case and programme (a re-enrolment after an exit replaces the row), and one
row per case with its household, county and size (updated by each verification), so
"households and people currently enrolled" is a join, and a household that shrinks or
grows counts right everywhere at once. An enrolment is current until its Exited event, or,
for a one-off grant (temporary or medical relief), until its one payment (since round 2:
after upgrading, `jiuzhu rebuild programme_roll case_status` reads old histories this way).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from domain.case import Case, add_months
from domain.deadlines import DeadlineKind
from domain.values import ONE_OFF
from projections.folding import Batch, FoldingReadModel, Row, Table, folds
from projections.regions import CHINA_TIME, Criteria, Report

__all__ = ["ProgrammeRoll", "report"]

HOUSEHOLDS = Table(
    "roll_case",
    (
        ("case_id", "uuid"),
        ("household_id", "text"),
        ("region", "text"),
        ("household_size", "integer"),
    ),
    loaded_by=frozenset({Case.Verified}),
)
ENROLMENTS = Table(
    "programme_roll",
    (
        ("case_id", "uuid"),
        ("programme", "text"),
        ("department", "text"),
        ("basis", "text"),
        ("category", "text"),
        ("amount_fen", "bigint"),
        ("effective_from", "date"),
        ("enrolled_at", "timestamptz"),
        ("review_interval_months", "integer"),
        ("review_due", "date"),
        ("last_reviewed_at", "timestamptz"),
        ("ended_on", "date"),
        ("exited_at", "timestamptz"),
        ("review_escalated_at", "timestamptz"),
    ),
    key=("case_id", "programme"),
    loaded_by=frozenset(
        {Case.Reviewed, Case.BenefitAdjusted, Case.Exited, Case.Paid, Case.Escalated}
    ),
)


class ProgrammeRoll(FoldingReadModel):
    """Enrolments per case and programme, with the household they support."""

    name = "programme_roll"
    tables: ClassVar = ("programme_roll", "roll_case")
    state_tables: ClassVar = (HOUSEHOLDS, ENROLMENTS)
    filtered: ClassVar = frozenset({Case.Paid, Case.Escalated})
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.roll_case (case_id uuid PRIMARY KEY, "
        "household_id text NOT NULL, region text NOT NULL, household_size integer NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {schema}.programme_roll (case_id uuid NOT NULL, "
        "programme text NOT NULL, department text NOT NULL, basis text NOT NULL, "
        "category text NOT NULL, amount_fen bigint NOT NULL, effective_from date NOT NULL, "
        "enrolled_at timestamptz NOT NULL, review_interval_months integer NOT NULL, "
        "review_due date NOT NULL, last_reviewed_at timestamptz, ended_on date, "
        "exited_at timestamptz, review_escalated_at timestamptz, "
        "PRIMARY KEY (case_id, programme))",
        # Tables made before the clock existed get the column (a rebuild fills it).
        "ALTER TABLE {schema}.programme_roll "
        "ADD COLUMN IF NOT EXISTS review_escalated_at timestamptz",
    )

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        batch.put(
            HOUSEHOLDS,
            {
                "case_id": event.originator_id,
                "household_id": event.household_id,
                "region": event.region,
                "household_size": event.household_size,
            },
        )

    @folds(Case.Verified)
    def _verified(self, event: Case.Verified, batch: Batch) -> None:
        household = batch.row(HOUSEHOLDS, event.originator_id)
        if household is None:
            return
        household["household_size"] = event.household_size
        batch.touch(HOUSEHOLDS, event.originator_id)

    @folds(Case.Enrolled)
    def _enrolled(self, event: Case.Enrolled, batch: Batch) -> None:
        batch.put(
            ENROLMENTS,
            {
                "case_id": event.originator_id,
                "programme": event.programme,
                "department": event.department,
                "basis": event.basis,
                "category": event.category,
                "amount_fen": event.amount_fen,
                "effective_from": event.effective_from,
                "enrolled_at": event.occurred_at,
                "review_interval_months": event.review_interval_months,
                "review_due": add_months(event.effective_from, event.review_interval_months),
                "last_reviewed_at": None,
                "ended_on": None,
                "exited_at": None,
                "review_escalated_at": None,
            },
        )

    def _enrolment(self, batch: Batch, event: Case.Event, programme: str) -> Row | None:
        key = (event.originator_id, programme)
        enrolment = batch.row(ENROLMENTS, key)
        if enrolment is not None:
            batch.touch(ENROLMENTS, key)
        return enrolment

    @folds(Case.Reviewed)
    def _reviewed(self, event: Case.Reviewed, batch: Batch) -> None:
        enrolment = self._enrolment(batch, event, event.programme)
        if enrolment is not None:
            enrolment["review_due"] = event.next_review_due
            enrolment["last_reviewed_at"] = event.occurred_at
            enrolment["review_escalated_at"] = None  # the review answered the escalation

    @folds(Case.BenefitAdjusted)
    def _adjusted(self, event: Case.BenefitAdjusted, batch: Batch) -> None:
        enrolment = self._enrolment(batch, event, event.programme)
        if enrolment is not None:
            enrolment["amount_fen"] = event.amount_fen

    @folds(Case.Exited)
    def _exited(self, event: Case.Exited, batch: Batch) -> None:
        enrolment = self._enrolment(batch, event, event.programme)
        if enrolment is not None:
            enrolment["ended_on"] = event.ended_on
            enrolment["exited_at"] = event.occurred_at

    def keeps(self, event: Any) -> bool:
        # Of payments only one-off ones: a grant's enrolment ends with its one payment.
        if isinstance(event, Case.Paid):
            return bool(event.period == ONE_OFF)
        # Of escalations only overdue reviews.
        return bool(event.kind == DeadlineKind.REVIEW_OVERDUE.value)

    @folds(Case.Escalated)
    def _review_escalated(self, event: Case.Escalated, batch: Batch) -> None:
        programme = event.deadline.partition(":")[2]
        enrolment = self._enrolment(batch, event, programme)
        if enrolment is not None:
            enrolment["review_escalated_at"] = event.occurred_at

    @folds(Case.Paid)
    def _paid_once(self, event: Case.Paid, batch: Batch) -> None:
        enrolment = self._enrolment(batch, event, event.programme)
        if enrolment is not None and enrolment["exited_at"] is None:
            enrolment["ended_on"] = event.occurred_at.astimezone(CHINA_TIME).date()
            enrolment["exited_at"] = event.occurred_at


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Households and people enrolled now, per region and programme, with reviews due."""
    active = "r.exited_at IS NULL"
    monthly = f"{active} AND r.basis = 'monthly'"
    curs.execute(
        SQL(
            "SELECT {group} AS region, r.programme, "
            "count(DISTINCT c.household_id) FILTER (WHERE {active}) AS households, "
            "coalesce(sum(c.household_size) FILTER (WHERE {active}), 0)::bigint AS people, "
            "coalesce(sum(r.amount_fen) FILTER (WHERE {monthly}), 0)::bigint "
            "AS monthly_amount_fen, "
            "count(*) FILTER (WHERE {monthly} AND r.review_due >= {today} "
            "AND r.review_due < {soon}) AS reviews_due_30_days, "
            "count(*) FILTER (WHERE {monthly} AND r.review_due < {today}) AS reviews_overdue, "
            "count(*) FILTER (WHERE {active} AND r.review_escalated_at IS NOT NULL) "
            "AS reviews_escalated, "
            "count(*) FILTER (WHERE NOT {active}) AS exited "
            "FROM {schema}.programme_roll r JOIN {schema}.roll_case c USING (case_id) "
            "WHERE {region} GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(
            group=criteria.group_sql("c.region"),
            active=SQL(active),
            monthly=SQL(monthly),
            today=Literal(criteria.today),
            soon=Literal(criteria.today + timedelta(days=30)),
            schema=Identifier(schema),
            region=criteria.region_sql("c.region"),
        )
    )
    return Report(
        title=f"Programme roll as of {criteria.today.isoformat()}",
        columns=[
            "region", "programme", "households", "people", "monthly_amount_fen",
            "reviews_due_30_days", "reviews_overdue", "reviews_escalated", "exited",
        ],
        rows=[dict(row) for row in curs.fetchall()],
        notes=["Current enrolments (no exit yet); reviews of monthly benefits only."],
    )  # fmt: skip
