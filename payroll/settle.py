"""`payroll settle`: finance's settlement file, taken in bulk.

The file (CSV: instruction_id, outcome, amount_fen, payment_ref, reason) is COPied into a
session's staging table and joined to the ledger's instructions in one ordered scan, so
lines arrive grouped by cycle. Chunk by chunk, the cycle decides (domain/payroll.py:
paid once, failed, or a finding), each payment is checked against its enrolment's facts
(domain/entitlements.refusal, the Case's own rule) and lands on its case as a `Paid`
event, and the cycle's events and the cases' events of the chunk are saved together in
one transaction. The cases are not loaded: their events are appended at the version
that follows the one the ledger's facts were read at, so a case changed meanwhile makes
the save conflict, and the chunk is decided again on fresh facts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import datetime_now_with_tzinfo
from eventsourcing.persistence import IntegrityError
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from domain.case import Case
from domain.entitlements import EnrolmentFact, PeriodPaid, refusal
from domain.payroll import Instruction, PayrollCycle, PayrollError, Settlement, cycle_key_of
from domain.provenance import Provenance
from payroll.decide import load_cycle
from payroll.follow import authorise, catch_up, payroll_lock
from projections.payroll_ledger import PayrollLedger

__all__ = ["SettleReport", "settle_file"]

_CHUNK = 5000
# Case events made here, not by a loaded Case (mypy sees the library's generic __init__).
_PAID: Any = Case.Paid
_FAILED: Any = Case.PaymentFailed
_STAGING = "payroll_settlement_lines"


@dataclass
class SettleReport:
    """What a settlement file did."""

    paid: int = 0
    paid_fen: int = 0
    failed: int = 0
    failed_fen: int = 0
    findings: list[list[Any]] = field(default_factory=list)
    repeats: int = 0
    unrouted: list[str] = field(default_factory=list)  # instructions of no selected cycle
    retries: int = 0

    def as_json(self) -> dict[str, Any]:
        """The report as printed by the CLI."""
        kinds: dict[str, int] = defaultdict(int)
        for finding in self.findings:
            kinds[finding[0]] += 1
        return {
            "paid": self.paid,
            "paid_fen": self.paid_fen,
            "failed": self.failed,
            "failed_fen": self.failed_fen,
            "findings": dict(kinds),
            "repeats": self.repeats,
            "unrouted": len(self.unrouted),
            "retries": self.retries,
        }


def settle_file(
    app: Application[UUID],
    ledger: PayrollLedger,
    selection: str,
    path: Path,
    *,
    by: Provenance,
    chunk: int = _CHUNK,
) -> SettleReport:
    """Settle a file against one cycle (id or name) or every cycle of a month (YYYY-MM)."""
    authorise(by, "settle_payroll")
    month = selection if len(selection) == 7 and selection[4] == "-" else None
    only = None if month is not None else load_cycle(app, selection).id
    report = SettleReport()
    with payroll_lock(app, "settle"), _datastore(app).get_connection() as conn:
        catch_up(app, ledger)
        _stage(conn, path)
        try:
            for cycle_id, lines in _grouped(conn, ledger, app, month, only, report):
                _settle_cycle(app, ledger, cycle_id, lines, by, chunk, report)
        finally:
            conn.execute(SQL("DROP TABLE IF EXISTS pg_temp.{}").format(Identifier(_STAGING)))
    return report


# -- reading the file -------------------------------------------------------------------


def _stage(conn: psycopg.Connection[Any], path: Path) -> None:
    """COPY the file into a staging table of this session, numbering its lines."""
    conn.execute(SQL("DROP TABLE IF EXISTS pg_temp.{}").format(Identifier(_STAGING)))
    conn.execute(
        SQL(
            "CREATE TEMP TABLE {} (line bigint GENERATED ALWAYS AS IDENTITY, "
            "instruction_id text NOT NULL, outcome text NOT NULL, amount_fen bigint NOT NULL, "
            "payment_ref text NOT NULL, reason text)"
        ).format(Identifier(_STAGING))
    )
    statement = SQL(
        "COPY {} (instruction_id, outcome, amount_fen, payment_ref, reason) "
        "FROM STDIN (FORMAT csv, HEADER true)"
    ).format(Identifier(_STAGING))
    try:
        with (
            conn.transaction(),
            conn.cursor() as curs,
            curs.copy(statement) as copy,
            path.open("rb") as source,
        ):
            while block := source.read(1 << 20):
                copy.write(block)
    except (psycopg.DataError, psycopg.IntegrityError) as error:
        detail = str(error).replace("\n", " ")
        raise PayrollError(str(path), f"bad settlement file: {detail}") from None
    bad = conn.execute(
        SQL("SELECT line, outcome FROM {} WHERE outcome NOT IN ('paid', 'failed') LIMIT 1").format(
            Identifier(_STAGING)
        )
    ).fetchone()
    if bad is not None:
        raise PayrollError(
            str(path), f"line {bad['line'] + 1}: outcome {bad['outcome']!r} is not paid or failed"
        )


def _grouped(
    conn: psycopg.Connection[Any],
    ledger: PayrollLedger,
    app: Application[UUID],
    month: str | None,
    only: UUID | None,
    report: SettleReport,
) -> Iterator[tuple[UUID, Iterator[Settlement]]]:
    """The staged lines by cycle, in file order within each; unknown ones routed last."""
    statement = SQL(
        "SELECT i.cycle_id, s.instruction_id, s.outcome, s.amount_fen, s.payment_ref, s.reason "
        "FROM pg_temp.{0} s LEFT JOIN {1}.payroll_instructions i USING (instruction_id) "
        "ORDER BY i.cycle_id NULLS LAST, s.line"
    ).format(Identifier(_STAGING), Identifier(ledger.datastore.schema))
    unknown: dict[UUID, list[Settlement]] = defaultdict(list)
    # WITH HOLD: the result is kept past its transaction, which ends at once (no session
    # stays idle in a transaction while the lines are settled on other connections).
    with conn.cursor(name="payroll_lines", row_factory=tuple_row, withhold=True) as rows:
        rows.itersize = 10_000
        with conn.transaction():
            rows.execute(statement)
        pending: tuple[Any, ...] | None = next(rows, None)
        while pending is not None and pending[0] is not None:
            cycle_id = pending[0]
            group: list[tuple[Any, ...]] = [pending]

            def lines(
                cycle_id: UUID = cycle_id, group: list[tuple[Any, ...]] = group
            ) -> Iterator[Settlement]:
                nonlocal pending
                yield _settlement(group[0])
                for row in rows:
                    if row[0] != cycle_id:
                        pending = row
                        return
                    yield _settlement(row)
                pending = None

            if _selected(group[0][1], cycle_id, month, only):
                yield cycle_id, lines()
            else:
                report.unrouted.extend(s.instruction_id for s in lines())
        while pending is not None:  # lines naming no known instruction
            settlement = _settlement(pending)
            target = only
            key = cycle_key_of(settlement.instruction_id)
            if only is None and key is not None and key[0] == month:
                named = PayrollCycle.id_for(*key)
                target = named if app.recorder.select_events(named, limit=1) else None
            if target is None:
                report.unrouted.append(settlement.instruction_id)
            else:
                unknown[target].append(settlement)
            pending = next(rows, None)
    yield from ((cycle_id, iter(lines)) for cycle_id, lines in unknown.items())


def _selected(instruction_id: str, cycle_id: UUID, month: str | None, only: UUID | None) -> bool:
    """Whether a known instruction's cycle is one this run settles."""
    if only is not None:
        return cycle_id == only
    return instruction_id.startswith(f"PI-{month}-")


def _datastore(app: Application[UUID]) -> Any:
    return app.recorder.datastore  # type: ignore[attr-defined]


def _settlement(row: tuple[Any, ...]) -> Settlement:
    return Settlement(row[1], row[2], int(row[3]), row[4], row[5] or "")


# -- settling a cycle's lines -------------------------------------------------------------


def _chunks(lines: Iterator[Settlement], size: int) -> Iterator[list[Settlement]]:
    chunk: list[Settlement] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _settle_cycle(
    app: Application[UUID],
    ledger: PayrollLedger,
    cycle_id: UUID,
    lines: Iterator[Settlement],
    by: Provenance,
    chunk_size: int,
    report: SettleReport,
) -> None:
    cycle = load_cycle(app, cycle_id)
    for chunk in _chunks(lines, chunk_size):
        for attempt in range(5):
            try:
                _settle_chunk(app, ledger, cycle, chunk, by, report)
                break
            except IntegrityError:
                # A case or the cycle changed meanwhile: decide again on fresh facts.
                if attempt == 4:
                    raise
                report.retries += 1
                cycle = load_cycle(app, cycle_id)
                catch_up(app, ledger)


def _settle_chunk(
    app: Application[UUID],
    ledger: PayrollLedger,
    cycle: PayrollCycle,
    chunk: list[Settlement],
    by: Provenance,
    report: SettleReport,
) -> None:
    case_ids = {
        item.case_id: UUID(item.case_id)
        for line in chunk
        if (item := cycle.instructions.get(line.instruction_id)) is not None
    }
    facts, versions = _case_state(app, ledger, {(c, cycle.programme) for c in case_ids.values()})
    paid_now: dict[tuple[UUID, str], list[EnrolmentFact]] = {}

    def case_refusal(item: Instruction) -> str | None:
        key = (case_ids[item.case_id], cycle.programme)
        history = facts.get(key, []) + paid_now.get(key, [])
        why = refusal(history, item.period)
        if why is None:
            paid_now.setdefault(key, []).append(PeriodPaid(item.period))
        return why

    outcome = cycle.settle(chunk, by=by, case_refusal=case_refusal)
    fields = by.event_fields()
    now = datetime_now_with_tzinfo()
    case_events: list[Case.Event] = []
    for item, payment_ref in outcome.paid:
        case_id = case_ids[item.case_id]
        versions[case_id] += 1
        case_events.append(
            _PAID(
                originator_id=case_id, originator_version=versions[case_id], timestamp=now,
                programme=cycle.programme, period=item.period, amount_fen=item.amount_fen,
                payment_ref=payment_ref, **fields,
            )
        )  # fmt: skip
    for item, payment_ref, why in outcome.failed:
        case_id = case_ids[item.case_id]
        if refusal(facts.get((case_id, cycle.programme), []), item.period) is not None:
            continue  # the case could not record it (closed meanwhile): the cycle has it
        versions[case_id] += 1
        case_events.append(
            _FAILED(
                originator_id=case_id, originator_version=versions[case_id], timestamp=now,
                programme=cycle.programme, period=item.period, amount_fen=item.amount_fen,
                payment_ref=payment_ref, **{**fields, "reason": f"payment failed: {why}"},
            )
        )  # fmt: skip
    app.save(cycle, *case_events)
    report.paid += len(outcome.paid)
    report.paid_fen += sum(item.amount_fen for item, _ in outcome.paid)
    report.failed += len(outcome.failed)
    report.failed_fen += sum(item.amount_fen for item, _, _ in outcome.failed)
    report.findings.extend(outcome.findings)
    report.repeats += outcome.repeats


def _case_state(
    app: Application[UUID], ledger: PayrollLedger, keys: Iterable[tuple[UUID, str]]
) -> tuple[dict[tuple[UUID, str], list[EnrolmentFact]], dict[UUID, int]]:
    """The enrolments' facts and their cases' versions, read at the same log position.

    A case with events the ledger has not folded yet (written after its position) makes
    the ledger catch up first, so facts and versions always describe the same state.
    """
    wanted = list(keys)
    case_ids = sorted({case_id for case_id, _ in wanted})
    recorder: Any = app.recorder
    statement = SQL(
        "SELECT originator_id, max(originator_version) AS now, "
        "max(originator_version) FILTER (WHERE notification_id <= %s) AS seen "
        "FROM {}.{} WHERE originator_id = ANY(%s) GROUP BY 1"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    for _ in range(3):
        position = ledger.scanned
        with ledger.datastore.transaction(commit=False) as curs:
            facts = ledger.facts_of(curs, wanted)
            curs.execute(statement, (position, case_ids))
            rows = curs.fetchall()
        if all(row["now"] == row["seen"] for row in rows):
            return facts, {row["originator_id"]: row["now"] for row in rows}
        catch_up(app, ledger)
    raise IntegrityError("cases keep changing while their payments are settled")
