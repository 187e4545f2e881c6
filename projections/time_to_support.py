"""Time to support: from discovery to first enrolment and to first money, per case.

Medians and 90th percentiles by region and channel are read from these rows
(percentile_cont), since percentiles do not add up the way counters do. "First money"
is the first payment of any programme or an emergency grant, whichever came first
in the log; durations are in days of business time.
"""

from __future__ import annotations

from typing import ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from domain.case import Case
from projections.folding import Batch, FoldingReadModel, Table, folds
from projections.regions import Criteria, Report

__all__ = ["TimeToSupport", "report"]

CASES = Table(
    "time_to_support",
    (
        ("case_id", "uuid"),
        ("region", "text"),
        ("channel", "text"),
        ("discovered_at", "timestamptz"),
        ("first_enrolled_at", "timestamptz"),
        ("first_paid_at", "timestamptz"),
    ),
    loaded_by=frozenset({Case.Enrolled, Case.Paid, Case.EmergencyReliefGranted}),
)


class TimeToSupport(FoldingReadModel):
    """Discovery, first enrolment and first payment of each case, with the days between."""

    name = "time_to_support"
    tables: ClassVar = ("time_to_support",)
    state_tables: ClassVar = (CASES,)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.time_to_support (case_id uuid PRIMARY KEY, "
        "region text NOT NULL, channel text NOT NULL, discovered_at timestamptz NOT NULL, "
        "first_enrolled_at timestamptz, first_paid_at timestamptz, "
        "days_to_enrolment numeric GENERATED ALWAYS AS "
        "(extract(epoch FROM first_enrolled_at - discovered_at) / 86400) STORED, "
        "days_to_payment numeric GENERATED ALWAYS AS "
        "(extract(epoch FROM first_paid_at - discovered_at) / 86400) STORED)",
    )

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        batch.put(
            CASES,
            {
                "case_id": event.originator_id,
                "region": event.region,
                "channel": event.channel,
                "discovered_at": event.occurred_at,
                "first_enrolled_at": None,
                "first_paid_at": None,
            },
        )

    def _first(self, batch: Batch, event: Case.Event, column: str) -> None:
        case = batch.row(CASES, event.originator_id)
        if case is None or case[column] is not None:
            return
        case[column] = event.occurred_at
        batch.touch(CASES, event.originator_id)

    @folds(Case.Enrolled)
    def _enrolled(self, event: Case.Enrolled, batch: Batch) -> None:
        self._first(batch, event, "first_enrolled_at")

    @folds(Case.Paid, Case.EmergencyReliefGranted)
    def _paid(self, event: Case.Event, batch: Batch) -> None:
        self._first(batch, event, "first_paid_at")


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Median and 90th percentile days to first enrolment and first money, by region, channel."""

    def percentile(fraction: float, column: str) -> Composed:
        return SQL(
            "round((percentile_cont({0}) WITHIN GROUP (ORDER BY {1}::float8))::numeric, 1)"
        ).format(Literal(fraction), Identifier(column))

    curs.execute(
        SQL(
            "SELECT {group} AS region, channel, count(*) AS cases, "
            "count(first_enrolled_at) AS enrolled, "
            "{p50e} AS median_days_to_enrolment, {p90e} AS p90_days_to_enrolment, "
            "count(first_paid_at) AS paid, "
            "{p50p} AS median_days_to_payment, {p90p} AS p90_days_to_payment "
            "FROM {schema}.time_to_support WHERE {region} AND {months} "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(
            group=criteria.group_sql(),
            p50e=percentile(0.5, "days_to_enrolment"),
            p90e=percentile(0.9, "days_to_enrolment"),
            p50p=percentile(0.5, "days_to_payment"),
            p90p=percentile(0.9, "days_to_payment"),
            schema=Identifier(schema),
            region=criteria.region_sql(),
            months=criteria.moments_sql("discovered_at"),
        )
    )
    return Report(
        title="Time from discovery to support (days)",
        columns=[
            "region", "channel", "cases", "enrolled", "median_days_to_enrolment",
            "p90_days_to_enrolment", "paid", "median_days_to_payment", "p90_days_to_payment",
        ],
        rows=[dict(row) for row in curs.fetchall()],
        notes=["Months filter the month of discovery; money includes emergency relief."],
    )  # fmt: skip
