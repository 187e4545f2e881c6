"""payroll_cycles: one row per payroll cycle, its status and its money at every stage.

Prepared, approved, paid, failed and outstanding counts and amounts per cycle (month,
programme, county); `jiuzhu report payroll` sums them by region and programme. Paid
amounts come from the same saves that put `Paid` on the cases, so they agree with the
payments ledger to the fen for the payments the payroll made.
"""

from __future__ import annotations

from functools import singledispatchmethod
from typing import ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.payroll import PayrollCycle
from projections.base import ReadModel
from projections.regions import Criteria, Report

__all__ = ["PayrollCycles", "report"]


class PayrollCycles(ReadModel):
    """Every cycle with its stage and its counts and amounts."""

    name = "payroll_cycles"
    tables: ClassVar = ("payroll_cycles",)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.payroll_cycles (cycle_id uuid PRIMARY KEY, "
        "month text NOT NULL, programme text NOT NULL, region text NOT NULL, "
        "status text NOT NULL, prepared_by text NOT NULL, decided_by text, "
        "prepared bigint NOT NULL, prepared_fen bigint NOT NULL, "
        "paid bigint NOT NULL DEFAULT 0, paid_fen bigint NOT NULL DEFAULT 0, "
        "failed bigint NOT NULL DEFAULT 0, failed_fen bigint NOT NULL DEFAULT 0, "
        "findings bigint NOT NULL DEFAULT 0, exports int NOT NULL DEFAULT 0)",
    )

    def _update(self, curs: Cursor[DictRow], assignments: str, *params: object) -> None:
        curs.execute(
            SQL("UPDATE {}.payroll_cycles SET " + assignments + " WHERE cycle_id = %s").format(
                Identifier(self.datastore.schema)
            ),
            params,
        )

    @singledispatchmethod
    def process_event(self, event: object, curs: Cursor[DictRow]) -> None:
        """Events of other aggregates change nothing."""

    @process_event.register
    def _prepared(self, event: PayrollCycle.Prepared, curs: Cursor[DictRow]) -> None:
        curs.execute(
            SQL(
                "INSERT INTO {}.payroll_cycles (cycle_id, month, programme, region, status, "
                "prepared_by, prepared, prepared_fen) VALUES (%s, %s, %s, %s, 'prepared', %s, "
                "%s, %s)"
            ).format(Identifier(self.datastore.schema)),
            (event.originator_id, event.month, event.programme, event.region, event.actor,
             event.instructions, event.amount_fen),
        )  # fmt: skip

    @process_event.register
    def _approved(self, event: PayrollCycle.Approved, curs: Cursor[DictRow]) -> None:
        self._update(curs, "status = 'approved', decided_by = %s", event.actor, event.originator_id)

    @process_event.register
    def _rejected(self, event: PayrollCycle.Rejected, curs: Cursor[DictRow]) -> None:
        self._update(curs, "status = 'rejected', decided_by = %s", event.actor, event.originator_id)

    @process_event.register
    def _exported(self, event: PayrollCycle.Exported, curs: Cursor[DictRow]) -> None:
        self._update(curs, "exports = exports + 1", event.originator_id)

    @process_event.register
    def _paid(self, event: PayrollCycle.EntitlementsPaid, curs: Cursor[DictRow]) -> None:
        fen = sum(int(item[2]) for item in event.items)
        self._update(
            curs, "paid = paid + %s, paid_fen = paid_fen + %s",
            len(event.items), fen, event.originator_id,
        )  # fmt: skip

    @process_event.register
    def _failed(self, event: PayrollCycle.EntitlementsFailed, curs: Cursor[DictRow]) -> None:
        fen = sum(int(item[2]) for item in event.items)
        self._update(
            curs, "failed = failed + %s, failed_fen = failed_fen + %s",
            len(event.items), fen, event.originator_id,
        )  # fmt: skip

    @process_event.register
    def _findings(self, event: PayrollCycle.FindingsRecorded, curs: Cursor[DictRow]) -> None:
        self._update(curs, "findings = findings + %s", len(event.items), event.originator_id)


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Cycles by region, programme and month: prepared, approved, paid, failed, outstanding."""
    where = SQL("{region} AND {months}").format(
        region=criteria.region_sql(), months=criteria.months_sql("month")
    )
    curs.execute(
        SQL(
            "SELECT {group} AS region, programme, month, count(*)::bigint AS cycles, "
            "sum(prepared)::bigint AS prepared, sum(prepared_fen)::bigint AS prepared_fen, "
            "sum(prepared) FILTER (WHERE status = 'approved')::bigint AS approved, "
            "sum(prepared_fen) FILTER (WHERE status = 'approved')::bigint AS approved_fen, "
            "sum(paid)::bigint AS paid, sum(paid_fen)::bigint AS paid_fen, "
            "sum(failed)::bigint AS failed, sum(failed_fen)::bigint AS failed_fen, "
            "sum(prepared - paid - failed) FILTER (WHERE status <> 'rejected')::bigint "
            "AS outstanding, "
            "sum(prepared_fen - paid_fen - failed_fen) FILTER (WHERE status <> 'rejected')"
            "::bigint AS outstanding_fen, sum(findings)::bigint AS findings "
            "FROM {schema}.payroll_cycles WHERE {where} GROUP BY 1, 2, 3 ORDER BY 3, 1, 2"
        ).format(group=criteria.group_sql(), schema=Identifier(schema), where=where)
    )
    rows = [
        {key: (0 if value is None else value) for key, value in row.items()}
        for row in curs.fetchall()
    ]
    return Report(
        title="Payroll cycles by region, programme and month",
        columns=[
            "region", "programme", "month", "cycles", "prepared", "prepared_fen", "approved",
            "approved_fen", "paid", "paid_fen", "failed", "failed_fen", "outstanding",
            "outstanding_fen", "findings",
        ],
        rows=rows,
        notes=[
            "Outstanding: instructed, not yet settled (rejected cycles owe nothing here: "
            "their months come back as arrears). Failed payments come back as arrears too.",
        ],
    )  # fmt: skip
