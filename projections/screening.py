"""screening: each data comparison batch, its hits, and what became of them later.

Three tables. `screening_batch`: one row per batch (ScreeningBatch.Compared: records
compared per source, hits per rule, rows refused per file). `screening_hit`: one row per
hit that took effect, found by its events' causation id (`upstream:/jiuzhu/screening/
batch/rule/household`) and correlation id (the batch): a case opened, a signal attached,
or a review started, with the verification tasks it issued and its position in the log.
`screening_followup`: the later verifications, enrolments and closures of the cases hits
touched, with their positions, so the report counts only what followed each hit.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import singledispatchmethod
from typing import Any, ClassVar

from orjson import dumps
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.case import Case
from domain.screening import ScreeningBatch, hit_of
from projections.base import Positioned, ReadModel
from projections.regions import Criteria, Report

__all__ = ["Screening", "report"]

_SEED = "seed's year: 8 batches, 30.18 million records, 380,000 tasks, 12,887 risks eliminated"


class Screening(ReadModel):
    """Batches, their hits and the hits' later outcomes."""

    name = "screening"
    tables: ClassVar = ("screening_batch", "screening_hit", "screening_followup")
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.screening_batch (batch text PRIMARY KEY, "
        "as_of date NOT NULL, records jsonb NOT NULL, hits jsonb NOT NULL, "
        "rejected jsonb NOT NULL, records_total bigint NOT NULL, hits_total bigint NOT NULL, "
        "compared_at timestamptz NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {schema}.screening_hit (batch text NOT NULL, "
        "rule text NOT NULL, household_id text NOT NULL, case_id uuid NOT NULL, "
        "outcome text NOT NULL, tasks integer NOT NULL, position bigint NOT NULL, "
        "PRIMARY KEY (batch, rule, household_id))",
        "CREATE INDEX IF NOT EXISTS screening_hit_case ON {schema}.screening_hit (case_id)",
        "CREATE TABLE IF NOT EXISTS {schema}.screening_followup (case_id uuid NOT NULL, "
        "position bigint NOT NULL, kind text NOT NULL, verdict text, "
        "PRIMARY KEY (case_id, position))",
    )

    def begin_batch(self) -> None:
        self._batches: list[tuple[Any, ...]] = []
        self._hits: list[tuple[Any, ...]] = []
        self._followups: list[tuple[Any, ...]] = []
        self._position = 0

    def process_batch(
        self, events: Iterable[Positioned], position: int, curs: Cursor[DictRow]
    ) -> tuple[int, int]:
        applied = last = 0
        for event, notification_id in events:
            if notification_id <= position or notification_id <= last:
                continue
            self._position = notification_id
            self.process_event(event, curs)
            last = notification_id
            applied += 1
        return applied, last

    @singledispatchmethod
    def process_event(self, event: object, curs: Cursor[DictRow]) -> None:
        """Events this read model does not need change nothing."""

    @process_event.register
    def _compared(self, event: ScreeningBatch.Compared, curs: Cursor[DictRow]) -> None:
        self._batches.append(
            (
                event.batch, event.as_of, dumps(event.records).decode(),
                dumps(event.hits).decode(), dumps(event.rejected).decode(),
                sum(event.records.values()), sum(event.hits.values()), event.occurred_at,
            )
        )  # fmt: skip

    def _hit(self, event: Case.Event, outcome: str, tasks: int) -> None:
        hit = hit_of(event.causation_id)
        if hit is not None:
            batch, rule, household = hit
            self._hits.append(
                (batch, rule, household, event.originator_id, outcome, tasks, self._position)
            )

    @process_event.register
    def _discovered(self, event: Case.Discovered, curs: Cursor[DictRow]) -> None:
        self._hit(event, "opened", 0)

    @process_event.register
    def _signal(self, event: Case.SignalAttached, curs: Cursor[DictRow]) -> None:
        self._hit(event, "signal", 0)

    @process_event.register
    def _assigned(self, event: Case.VerificationAssigned, curs: Cursor[DictRow]) -> None:
        # The task of a case the hit opened adds to its row; alone, it is a review started.
        self._hit(event, "review", 1)

    @process_event.register
    def _verified(self, event: Case.Verified, curs: Cursor[DictRow]) -> None:
        self._followups.append((event.originator_id, self._position, "verified", event.verdict))

    @process_event.register
    def _enrolled(self, event: Case.Enrolled, curs: Cursor[DictRow]) -> None:
        self._followups.append((event.originator_id, self._position, "enrolled", None))

    @process_event.register
    def _closed(self, event: Case.Closed, curs: Cursor[DictRow]) -> None:
        self._followups.append((event.originator_id, self._position, "closed", None))

    def flush_batch(self, curs: Cursor[DictRow]) -> None:
        if self._batches:
            curs.executemany(
                self.sql(
                    "INSERT INTO {schema}.screening_batch VALUES "
                    "(%s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s, %s, %s) "
                    "ON CONFLICT (batch) DO NOTHING"
                ),
                self._batches,
            )
        if self._hits:
            curs.executemany(
                self.sql(
                    "INSERT INTO {schema}.screening_hit AS h VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (batch, rule, household_id) DO UPDATE SET tasks = h.tasks + "
                    "excluded.tasks"
                ),
                self._hits,
            )
        if self._followups:
            ids, positions, kinds, verdicts = (list(c) for c in zip(*self._followups, strict=True))
            # Only what followed some hit (the same rows however the log is batched).
            curs.execute(
                self.sql(
                    "INSERT INTO {schema}.screening_followup SELECT f.* FROM unnest("
                    "%s::uuid[], %s::bigint[], %s::text[], %s::text[]) "
                    "AS f(case_id, position, kind, verdict) WHERE EXISTS (SELECT 1 FROM "
                    "{schema}.screening_hit h WHERE h.case_id = f.case_id "
                    "AND h.position < f.position) "
                    "ON CONFLICT DO NOTHING"
                ),
                (ids, positions, kinds, verdicts),
            )


_COLUMNS = [
    "batch", "as_of", "records_compared", "hits", "tasks_issued", "cases_opened",
    "signals_attached", "reviews_started", "verified", "enrolled", "risks_eliminated", "closed",
]  # fmt: skip
_SUMMED = _COLUMNS[2:]


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Per batch: records compared, hits, tasks, cases, signals, reviews, and what followed."""
    curs.execute(
        SQL(
            "WITH hit AS (SELECT h.*, "
            "EXISTS (SELECT 1 FROM {schema}.screening_followup f WHERE f.case_id = h.case_id "
            "AND f.position > h.position AND f.kind = 'verified') AS verified, "
            "EXISTS (SELECT 1 FROM {schema}.screening_followup f WHERE f.case_id = h.case_id "
            "AND f.position > h.position AND f.kind = 'enrolled') AS enrolled, "
            "EXISTS (SELECT 1 FROM {schema}.screening_followup f WHERE f.case_id = h.case_id "
            "AND f.position > h.position AND f.verdict = 'risk_eliminated') AS eliminated, "
            "EXISTS (SELECT 1 FROM {schema}.screening_followup f WHERE f.case_id = h.case_id "
            "AND f.position > h.position AND f.kind = 'closed') AS closed "
            "FROM {schema}.screening_hit h) "
            "SELECT b.batch, b.as_of, b.records_total AS records_compared, b.hits_total AS hits, "
            "coalesce(sum(h.tasks), 0)::bigint AS tasks_issued, "
            "count(h.case_id) FILTER (WHERE h.outcome = 'opened') AS cases_opened, "
            "count(h.case_id) FILTER (WHERE h.outcome = 'signal') AS signals_attached, "
            "count(h.case_id) FILTER (WHERE h.outcome = 'review') AS reviews_started, "
            "count(DISTINCT h.case_id) FILTER (WHERE h.verified) AS verified, "
            "count(DISTINCT h.case_id) FILTER (WHERE h.enrolled) AS enrolled, "
            "count(DISTINCT h.case_id) FILTER (WHERE h.eliminated) AS risks_eliminated, "
            "count(DISTINCT h.case_id) FILTER (WHERE h.closed) AS closed, "
            "b.records AS records_by_source, b.hits AS hits_by_rule, b.rejected AS rejected "
            "FROM {schema}.screening_batch b LEFT JOIN hit h USING (batch) "
            "GROUP BY b.batch ORDER BY b.as_of, b.batch"
        ).format(schema=Identifier(schema))
    )
    rows = [dict(row) for row in curs.fetchall()]
    if rows:
        total: dict[str, Any] = {"batch": f"total ({len(rows)} batches)", "as_of": None}
        total |= {column: sum(int(row[column]) for row in rows) for column in _SUMMED}
        rows.append(total)
    notes = [
        f"{row['batch']}: records {_listed(row['records_by_source'])}; "
        f"hits {_listed(row['hits_by_rule'])}"
        for row in rows
        if "records_by_source" in row
    ]
    return Report(
        title="Data comparison batches (数据比对)",
        columns=list(_COLUMNS),
        rows=rows,
        notes=[
            *notes,
            "tasks issued: verification visits assigned (cases opened + reviews started); "
            "verified, enrolled, risks eliminated, closed: cases hit, later (by log position).",
            f"Compare with the {_SEED}.",
        ],
    )


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items()) or "none"
