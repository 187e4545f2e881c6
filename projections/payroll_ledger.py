"""payroll_ledger: what the payroll needs of every enrolment, followed from the log.

The payroll's process-manager state (see payroll/): per (case, programme) the short list
of facts domain.entitlements folds (enrolled, adjusted, exited, paid, closed), per case
its county and household, and every instruction of every cycle with its status (so an
entitlement instructed in one cycle is not instructed again while it is outstanding).
Facts are appended in log order with jsonb `||`: a batch writes each touched row once
and never reads it. Prepare and settle catch this model up to the log's head before they
decide, and record the position they decided at.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from functools import singledispatchmethod
from typing import Any, ClassVar
from uuid import UUID

import orjson
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier
from psycopg.types.json import set_json_loads

from domain.case import Case
from domain.entitlements import (
    AmountChanged,
    CaseClosed,
    EnrolmentEnded,
    EnrolmentFact,
    EnrolmentStarted,
    PeriodPaid,
)
from domain.payroll import PayrollCycle
from domain.values import PaymentBasis
from projections.base import ReadModel

__all__ = ["PayrollLedger", "decode_facts", "encode_fact"]


def encode_fact(fact: EnrolmentFact) -> list[Any]:
    """A fact as the ledger stores it: a short JSON array."""
    if isinstance(fact, EnrolmentStarted):
        return ["s", fact.effective_from.isoformat(), fact.amount_fen, fact.monthly]
    if isinstance(fact, AmountChanged):
        return ["a", fact.effective_from.isoformat(), fact.amount_fen]
    if isinstance(fact, EnrolmentEnded):
        return ["e", fact.ended_on.isoformat()]
    if isinstance(fact, PeriodPaid):
        return ["p", fact.period]
    return ["c", fact.on.isoformat()]


def decode_facts(rows: Sequence[Sequence[Any]]) -> list[EnrolmentFact]:
    """The facts of a ledger row, in the order they were recorded."""
    facts: list[EnrolmentFact] = []
    for row in rows:
        kind = row[0]
        if kind == "s":
            facts.append(EnrolmentStarted(date.fromisoformat(row[1]), row[2], row[3]))
        elif kind == "a":
            facts.append(AmountChanged(date.fromisoformat(row[1]), row[2]))
        elif kind == "e":
            facts.append(EnrolmentEnded(date.fromisoformat(row[1])))
        elif kind == "p":
            facts.append(PeriodPaid(row[1]))
        else:
            facts.append(CaseClosed(date.fromisoformat(row[1])))
    return facts


class PayrollLedger(ReadModel):
    """Enrolment facts and cycle instructions, for preparing and settling payrolls."""

    name = "payroll_ledger"
    tables: ClassVar = ("payroll_case", "payroll_enrolments", "payroll_instructions")
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.payroll_case (case_id uuid PRIMARY KEY, "
        "region text NOT NULL, household_id text NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {schema}.payroll_enrolments (case_id uuid NOT NULL, "
        "programme text NOT NULL, facts jsonb NOT NULL, PRIMARY KEY (case_id, programme))",
        "CREATE TABLE IF NOT EXISTS {schema}.payroll_instructions ("
        "instruction_id text PRIMARY KEY, cycle_id uuid NOT NULL, case_id uuid NOT NULL, "
        "programme text NOT NULL, period text NOT NULL, amount_fen bigint NOT NULL, "
        "kind text NOT NULL, status text NOT NULL)",
        "CREATE INDEX IF NOT EXISTS payroll_instructions_outstanding ON "
        "{schema}.payroll_instructions (programme, case_id) WHERE status = 'instructed'",
        "CREATE INDEX IF NOT EXISTS payroll_instructions_cycle ON "
        "{schema}.payroll_instructions (cycle_id)",
    )

    # The log position this process has folded everything up to (payroll.follow.catch_up).
    scanned: int = 0

    def begin_batch(self) -> None:
        self._cases: list[tuple[UUID, str, str]] = []
        self._facts: dict[tuple[UUID, str], list[list[Any]]] = {}
        self._closures: list[tuple[UUID, str]] = []
        self._instructions: list[tuple[Any, ...]] = []
        self._statuses: list[tuple[str, str]] = []
        self._rejected_cycles: list[UUID] = []

    def _fact(self, case_id: UUID, programme: str, fact: EnrolmentFact) -> None:
        self._facts.setdefault((case_id, programme), []).append(encode_fact(fact))

    @singledispatchmethod
    def process_event(self, event: object, curs: Cursor[DictRow]) -> None:
        """Events the payroll does not need change nothing."""

    @process_event.register
    def _discovered(self, event: Case.Discovered, curs: Cursor[DictRow]) -> None:
        self._cases.append((event.originator_id, event.region, event.household_id))

    @process_event.register
    def _enrolled(self, event: Case.Enrolled, curs: Cursor[DictRow]) -> None:
        monthly = event.basis == PaymentBasis.MONTHLY.value
        fact = EnrolmentStarted(event.effective_from, event.amount_fen, monthly)
        self._fact(event.originator_id, event.programme, fact)

    @process_event.register
    def _adjusted(self, event: Case.BenefitAdjusted, curs: Cursor[DictRow]) -> None:
        fact = AmountChanged(event.effective_from, event.amount_fen)
        self._fact(event.originator_id, event.programme, fact)

    @process_event.register
    def _exited(self, event: Case.Exited, curs: Cursor[DictRow]) -> None:
        self._fact(event.originator_id, event.programme, EnrolmentEnded(event.ended_on))

    @process_event.register
    def _paid(self, event: Case.Paid, curs: Cursor[DictRow]) -> None:
        self._fact(event.originator_id, event.programme, PeriodPaid(event.period))

    @process_event.register
    def _closed(self, event: Case.Closed, curs: Cursor[DictRow]) -> None:
        self._closures.append((event.originator_id, event.occurred_at.date().isoformat()))

    @process_event.register
    def _listed(self, event: PayrollCycle.EntitlementsListed, curs: Cursor[DictRow]) -> None:
        cycle_id = event.originator_id
        for instruction_id, case_id, _household, period, amount_fen, kind in event.items:
            self._instructions.append(
                (instruction_id, cycle_id, UUID(case_id), event.programme, period, amount_fen,
                 kind, "instructed")
            )  # fmt: skip

    @process_event.register
    def _settled_paid(self, event: PayrollCycle.EntitlementsPaid, curs: Cursor[DictRow]) -> None:
        self._statuses.extend(("paid", item[0]) for item in event.items)

    @process_event.register
    def _failed(self, event: PayrollCycle.EntitlementsFailed, curs: Cursor[DictRow]) -> None:
        self._statuses.extend(("failed", item[0]) for item in event.items)

    @process_event.register
    def _rejected(self, event: PayrollCycle.Rejected, curs: Cursor[DictRow]) -> None:
        self._rejected_cycles.append(event.originator_id)

    def _copy(
        self,
        curs: Cursor[DictRow],
        stage: str,
        columns: str,
        rows: Iterable[Sequence[Any]],
        then: str,
    ) -> None:
        """COPY rows into a session staging table, run one set-based statement, empty it."""
        name = Identifier(stage)
        curs.execute(SQL("CREATE TEMP TABLE IF NOT EXISTS {} (" + columns + ")").format(name))
        names = SQL(", ").join(Identifier(c.split()[0]) for c in columns.split(", "))
        with curs.copy(SQL("COPY {} ({}) FROM STDIN").format(name, names)) as copy:
            for row in rows:
                copy.write_row(row)
        curs.execute(SQL(then).format(schema=Identifier(self.datastore.schema), stage=name))
        curs.execute(SQL("DELETE FROM {}").format(name))

    def flush_batch(self, curs: Cursor[DictRow]) -> None:
        # In the order the events came: cases, facts (closures last: nothing follows one),
        # instructions before the settlements and rejections that change their status.
        # Each kind goes by COPY into a staging table and one statement (a row at a time
        # was a tenth of the speed of the other read models).
        schema = Identifier(self.datastore.schema)
        if self._cases:
            self._copy(
                curs, "payroll_case_stage", "case_id uuid, region text, household_id text",
                self._cases,
                "INSERT INTO {schema}.payroll_case SELECT * FROM {stage} ON CONFLICT DO NOTHING",
            )  # fmt: skip
        if self._facts:
            self._copy(
                curs, "payroll_facts_stage", "case_id uuid, programme text, facts jsonb",
                ((c, p, orjson.dumps(f).decode()) for (c, p), f in self._facts.items()),
                "INSERT INTO {schema}.payroll_enrolments AS e SELECT * FROM {stage} "
                "ON CONFLICT (case_id, programme) DO UPDATE SET facts = e.facts || EXCLUDED.facts",
            )  # fmt: skip
        if self._closures:
            curs.executemany(
                SQL(
                    "UPDATE {}.payroll_enrolments SET facts = facts || %s::jsonb WHERE case_id = %s"
                ).format(schema),
                [(orjson.dumps([["c", on]]).decode(), c) for c, on in self._closures],
            )
        if self._instructions:
            self._copy(
                curs, "payroll_instructions_stage",
                "instruction_id text, cycle_id uuid, case_id uuid, programme text, "
                "period text, amount_fen bigint, kind text, status text",
                self._instructions,
                "INSERT INTO {schema}.payroll_instructions SELECT * FROM {stage} "
                "ON CONFLICT DO NOTHING",
            )  # fmt: skip
        if self._statuses:
            self._copy(
                curs, "payroll_status_stage", "status text, instruction_id text",
                self._statuses,
                "UPDATE {schema}.payroll_instructions i SET status = s.status FROM {stage} s "
                "WHERE i.instruction_id = s.instruction_id",
            )  # fmt: skip
        for cycle_id in self._rejected_cycles:
            curs.execute(
                SQL(
                    "UPDATE {}.payroll_instructions SET status = 'rejected' "
                    "WHERE cycle_id = %s AND status = 'instructed'"
                ).format(schema),
                (cycle_id,),
            )

    # -- reading ------------------------------------------------------------------------

    def histories(
        self,
        programmes: Sequence[str] | None = None,
        regions: Sequence[str] | None = None,
        *,
        except_cycle: UUID | None = None,
        batch: int = 10_000,
    ) -> Iterator[tuple[str, str, UUID, str, list[list[Any]], list[str] | None]]:
        """Every enrolment's (programme, county, case, household, facts, periods outstanding).

        One scan, ordered by programme, county and case, so a caller takes the cycles one
        after the other. Periods outstanding: instructed in a cycle (other than
        `except_cycle`) and not yet settled; they are owed there, not again. The result
        is held past its transaction (WITH HOLD): no session idles in a transaction while
        the caller saves cycles.
        """
        statement = SQL(
            "SELECT e.programme, c.region, e.case_id, c.household_id, e.facts, f.periods "
            "FROM {0}.payroll_enrolments e JOIN {0}.payroll_case c USING (case_id) "
            "LEFT JOIN (SELECT case_id, programme, array_agg(period) AS periods "
            "FROM {0}.payroll_instructions WHERE status = 'instructed' "
            "AND cycle_id IS DISTINCT FROM %s GROUP BY 1, 2) f USING (case_id, programme) "
            "WHERE (%s::text[] IS NULL OR e.programme = ANY(%s::text[])) "
            "AND (%s::text[] IS NULL OR c.region = ANY(%s::text[])) "
            "ORDER BY e.programme, c.region, e.case_id"
        ).format(Identifier(self.datastore.schema))
        wanted_programmes = list(programmes) if programmes else None
        wanted_regions = list(regions) if regions else None
        params = (except_cycle, wanted_programmes, wanted_programmes, wanted_regions,
                  wanted_regions)  # fmt: skip
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(name="payroll_roll", row_factory=tuple_row, withhold=True) as rows,
        ):
            rows.itersize = batch
            set_json_loads(orjson.loads, rows)
            with conn.transaction():
                rows.execute(statement, params)
            yield from rows

    def facts_of(
        self, curs: Cursor[DictRow], keys: Iterable[tuple[UUID, str]]
    ) -> dict[tuple[UUID, str], list[EnrolmentFact]]:
        """The facts of some (case, programme) enrolments."""
        wanted = list(keys)
        if not wanted:
            return {}
        set_json_loads(orjson.loads, curs)  # several times faster than json.loads
        curs.execute(
            SQL(
                "SELECT e.case_id, e.programme, e.facts FROM {0}.payroll_enrolments e "
                "JOIN unnest(%s::uuid[], %s::text[]) AS k(case_id, programme) "
                "USING (case_id, programme)"
            ).format(Identifier(self.datastore.schema)),
            ([c for c, _ in wanted], [p for _, p in wanted]),
        )
        return {
            (row["case_id"], row["programme"]): decode_facts(row["facts"])
            for row in curs.fetchall()
        }
