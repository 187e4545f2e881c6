"""Payments ledger: counts and amounts by programme, department, region and business month.

Kinds are kept apart: `monthly` benefits (paid per month), `one_off` grants (paid once)
and `emergency` relief paid first, before verification (先行救助). Failed payments
are not payments and are not counted.
"""

from __future__ import annotations

from typing import ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.case import Case
from domain.values import ONE_OFF, Programme
from projections.folding import Batch, FoldingReadModel, Table, folds
from projections.regions import Criteria, Report, business_month

__all__ = ["PaymentsLedger", "report"]

CASES = Table(
    "payments_case",
    (("case_id", "uuid"), ("region", "text")),
    loaded_by=frozenset({Case.Paid, Case.EmergencyReliefGranted}),
)
LEDGER = Table(
    "payments_ledger",
    (
        ("region", "text"),
        ("month", "text"),
        ("programme", "text"),
        ("department", "text"),
        ("kind", "text"),
        ("payments", "bigint"),
        ("amount_fen", "bigint"),
    ),
    key=("region", "month", "programme", "department", "kind"),
    counter=True,
)
_DEPARTMENT = {programme.value: programme.department.value for programme in Programme}


class PaymentsLedger(FoldingReadModel):
    """Money paid, by county, business month, programme, department and kind."""

    name = "payments_ledger"
    tables: ClassVar = ("payments_ledger", "payments_case")
    state_tables: ClassVar = (CASES,)
    counter_tables: ClassVar = (LEDGER,)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.payments_case "
        "(case_id uuid PRIMARY KEY, region text NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {schema}.payments_ledger (region text NOT NULL, "
        "month text NOT NULL, programme text NOT NULL, department text NOT NULL, "
        "kind text NOT NULL, payments bigint NOT NULL, amount_fen bigint NOT NULL, "
        "PRIMARY KEY (region, month, programme, department, kind))",
    )

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        batch.put(CASES, {"case_id": event.originator_id, "region": event.region})

    def _count(
        self, batch: Batch, event: Case.Event, programme: str, kind: str, amount_fen: int
    ) -> None:
        case = batch.row(CASES, event.originator_id)
        if case is None:
            return
        department = _DEPARTMENT.get(programme, "unknown")
        month = business_month(event.occurred_at)
        batch.add_all(LEDGER, (case["region"], month, programme, department, kind), (1, amount_fen))

    @folds(Case.Paid)
    def _paid(self, event: Case.Paid, batch: Batch) -> None:
        kind = "one_off" if event.period == ONE_OFF else "monthly"
        self._count(batch, event, event.programme, kind, event.amount_fen)

    @folds(Case.EmergencyReliefGranted)
    def _emergency(self, event: Case.EmergencyReliefGranted, batch: Batch) -> None:
        self._count(batch, event, event.programme, "emergency", event.amount_fen)


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Payments per region, programme and kind over the months, and the monthly totals."""
    where = SQL("{region} AND {months}").format(
        region=criteria.region_sql(), months=criteria.months_sql("month")
    )
    curs.execute(
        SQL(
            "SELECT {group} AS region, programme, department, kind, "
            "sum(payments)::bigint AS payments, sum(amount_fen)::bigint AS amount_fen "
            "FROM {schema}.payments_ledger WHERE {where} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4"
        ).format(group=criteria.group_sql(), schema=Identifier(schema), where=where)
    )
    rows = [dict(row) for row in curs.fetchall()]
    curs.execute(
        SQL(
            "SELECT month, sum(amount_fen)::bigint AS amount_fen FROM {schema}.payments_ledger "
            "WHERE {where} GROUP BY 1 ORDER BY 1"
        ).format(schema=Identifier(schema), where=where)
    )
    series = [(row["month"], int(row["amount_fen"])) for row in curs.fetchall()]
    return Report(
        title="Payments by programme and kind",
        columns=["region", "programme", "department", "kind", "payments", "amount_fen"],
        rows=rows,
        series=series,
        notes=["Kinds: monthly benefits, one-off grants, emergency relief paid first."],
    )
