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

    def flush_batch(self, curs: Cursor[DictRow]) -> None:
        # In the order the events came: cases, facts (closures last: nothing follows one),
        # instructions before the settlements and rejections that change their status.
        schema = Identifier(self.datastore.schema)
        if self._cases:
            curs.executemany(
                SQL(
                    "INSERT INTO {}.payroll_case (case_id, region, household_id) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
                ).format(schema),
                self._cases,
            )
        if self._facts:
            curs.executemany(
                SQL(
                    "INSERT INTO {0}.payroll_enrolments AS e (case_id, programme, facts) "
                    "VALUES (%s, %s, %s::jsonb) ON CONFLICT (case_id, programme) "
                    "DO UPDATE SET facts = e.facts || EXCLUDED.facts"
                ).format(schema),
                [(c, p, orjson.dumps(f).decode()) for (c, p), f in self._facts.items()],
            )
        if self._closures:
            curs.executemany(
                SQL(
                    "UPDATE {}.payroll_enrolments SET facts = facts || %s::jsonb WHERE case_id = %s"
                ).format(schema),
                [(orjson.dumps([["c", on]]).decode(), c) for c, on in self._closures],
            )
        if self._instructions:
            curs.executemany(
                SQL(
                    "INSERT INTO {}.payroll_instructions VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                ).format(schema),
                self._instructions,
            )
        if self._statuses:
            curs.executemany(
                SQL(
                    "UPDATE {}.payroll_instructions SET status = %s WHERE instruction_id = %s"
                ).format(schema),
                self._statuses,
            )
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
        curs: Cursor[DictRow],
        programme: str,
        region: str,
        *,
        except_cycle: UUID | None = None,
        batch: int = 5000,
    ) -> Iterator[tuple[UUID, str, list[list[Any]], list[str]]]:
        """(case, household, stored facts, periods outstanding elsewhere) of a county's roll.

        Outstanding elsewhere: instructed in a cycle (other than `except_cycle`) and not
        yet settled; such periods are owed there, not again.
        """
        statement = SQL(
            "SELECT e.case_id, c.household_id, e.facts, "
            "ARRAY(SELECT i.period FROM {0}.payroll_instructions i WHERE i.case_id = e.case_id "
            "AND i.programme = e.programme AND i.status = 'instructed' "
            "AND i.cycle_id IS DISTINCT FROM %s) AS in_flight "
            "FROM {0}.payroll_enrolments e JOIN {0}.payroll_case c USING (case_id) "
            "WHERE e.programme = %s AND c.region = %s ORDER BY e.case_id"
        ).format(Identifier(self.datastore.schema))
        with curs.connection.cursor(name="payroll_roll", row_factory=tuple_row) as named:
            named.itersize = batch
            named.execute(statement, (except_cycle, programme, region))
            yield from named

    def rolls(self, curs: Cursor[DictRow]) -> list[tuple[str, str]]:
        """Every (programme, county) with an enrolment: the cycles a month may have."""
        curs.execute(
            SQL(
                "SELECT DISTINCT e.programme, c.region FROM {0}.payroll_enrolments e "
                "JOIN {0}.payroll_case c USING (case_id) ORDER BY 1, 2"
            ).format(Identifier(self.datastore.schema))
        )
        return [(row["programme"], row["region"]) for row in curs.fetchall()]

    def facts_of(
        self, curs: Cursor[DictRow], keys: Iterable[tuple[UUID, str]]
    ) -> dict[tuple[UUID, str], list[EnrolmentFact]]:
        """The facts of some (case, programme) enrolments."""
        wanted = list(keys)
        if not wanted:
            return {}
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
