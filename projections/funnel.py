"""The funnel by region and month: discovered → assigned → verified → enrolled → paid.

A case counts once per stage, in the business month of the event that first took it
there (log order), in the county it was discovered in. Risks eliminated and cases
found not eligible count at their first such verification; closures at closing.
"""

from __future__ import annotations

from typing import ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.case import Case
from projections.folding import Batch, FoldingReadModel, Table, folds
from projections.regions import Criteria, Report, business_month

__all__ = ["STAGES", "Funnel", "report"]

# Counter columns of the funnel table, in order.
STAGES = (
    "discovered",
    "verification_assigned",
    "verified",
    "risk_eliminated",
    "not_eligible",
    "enrolled",
    "paid",
    "closed",
)

CASES = Table(
    "funnel_case",
    (
        ("case_id", "uuid"),
        ("region", "text"),
        ("verification_assigned", "boolean"),
        ("verified", "boolean"),
        ("risk_eliminated", "boolean"),
        ("not_eligible", "boolean"),
        ("enrolled", "boolean"),
        ("paid", "boolean"),
        ("closed", "boolean"),
    ),
    loaded_by=frozenset(
        {
            Case.VerificationAssigned,
            Case.Verified,
            Case.Enrolled,
            Case.Paid,
            Case.EmergencyReliefGranted,
            Case.Closed,
        }
    ),
)
COUNTS = Table(
    "funnel",
    (("region", "text"), ("month", "text"), *((stage, "bigint") for stage in STAGES)),
    key=("region", "month"),
    counter=True,
)
# The funnel's deltas when a case reaches one stage: one for that stage, none for the rest.
_ONE = {stage: tuple(int(other == stage) for other in STAGES) for stage in STAGES}


class Funnel(FoldingReadModel):
    """How many cases reached each stage, by county and business month."""

    name = "funnel"
    tables: ClassVar = ("funnel", "funnel_case")
    state_tables: ClassVar = (CASES,)
    counter_tables: ClassVar = (COUNTS,)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.funnel_case (case_id uuid PRIMARY KEY, "
        "region text NOT NULL, verification_assigned boolean NOT NULL, "
        "verified boolean NOT NULL, risk_eliminated boolean NOT NULL, "
        "not_eligible boolean NOT NULL, enrolled boolean NOT NULL, paid boolean NOT NULL, "
        "closed boolean NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {schema}.funnel (region text NOT NULL, "
        "month text NOT NULL, discovered bigint NOT NULL, "
        "verification_assigned bigint NOT NULL, verified bigint NOT NULL, "
        "risk_eliminated bigint NOT NULL, not_eligible bigint NOT NULL, "
        "enrolled bigint NOT NULL, paid bigint NOT NULL, closed bigint NOT NULL, "
        "PRIMARY KEY (region, month))",
    )

    def _reach(self, batch: Batch, event: Case.Event, stage: str) -> None:
        """Count the case at a stage the first time it gets there."""
        case = batch.row(CASES, event.originator_id)
        if case is None or case[stage]:
            return
        case[stage] = True
        batch.touch(CASES, event.originator_id)
        batch.add_all(COUNTS, (case["region"], business_month(event.occurred_at)), _ONE[stage])

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        flags = dict.fromkeys(STAGES[1:], False)
        batch.put(CASES, {"case_id": event.originator_id, "region": event.region, **flags})
        month = business_month(event.occurred_at)
        batch.add_all(COUNTS, (event.region, month), _ONE["discovered"])

    @folds(Case.VerificationAssigned)
    def _assigned(self, event: Case.VerificationAssigned, batch: Batch) -> None:
        self._reach(batch, event, "verification_assigned")

    @folds(Case.Verified)
    def _verified(self, event: Case.Verified, batch: Batch) -> None:
        self._reach(batch, event, "verified")
        if event.verdict in ("risk_eliminated", "not_eligible"):
            self._reach(batch, event, event.verdict)

    @folds(Case.Enrolled)
    def _enrolled(self, event: Case.Enrolled, batch: Batch) -> None:
        self._reach(batch, event, "enrolled")

    @folds(Case.Paid, Case.EmergencyReliefGranted)
    def _paid(self, event: Case.Event, batch: Batch) -> None:
        self._reach(batch, event, "paid")

    @folds(Case.Closed)
    def _closed(self, event: Case.Closed, batch: Batch) -> None:
        self._reach(batch, event, "closed")


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Cases reaching each stage per region (rolled up), over a range of business months."""
    sums = SQL(", ").join(
        SQL("sum({0})::bigint AS {0}").format(Identifier(stage)) for stage in STAGES
    )
    curs.execute(
        SQL(
            "SELECT {group} AS region, {sums} FROM {schema}.funnel "
            "WHERE {region} AND {months} GROUP BY 1 ORDER BY 1"
        ).format(
            group=criteria.group_sql(),
            sums=sums,
            schema=Identifier(schema),
            region=criteria.region_sql(),
            months=criteria.months_sql("month"),
        )
    )
    rows = [dict(row) for row in curs.fetchall()]
    totals = [(stage, sum(int(row[stage]) for row in rows)) for stage in STAGES]
    return Report(
        title="Funnel: cases reaching each stage",
        columns=["region", *STAGES],
        rows=rows,
        bars=[(stage, count) for stage, count in totals if stage != "closed"],
        notes=["A case counts once per stage, in the month it first got there."],
    )
