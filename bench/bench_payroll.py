"""Payroll at provincial scale: prepare a month for N enrolments, settle an N-line file.

Seeds N enrolled cases (Discovered + Enrolled, no personal data) in 100 counties through
the audited CaseWork, lets the payroll ledger follow them (timed apart: the projector
keeps it current in production), then times, in one run:

- prepare: `payroll.prepare.prepare_month` for the month (every county's cycle);
- settle: `payroll.settle.settle_file` on an N-line settlement file (all paid), which
  appends N `Paid` events to the cases and the cycles' settlement events;
- baselines of the same run: the event store's batched append (N receipts saved 5,000
  per save through the same audited recorder) and a raw COPY of N instruction rows.

Peak RSS is read after each stage (flat memory: compare --enrolments N and 2N).
Targets (issue 12): prepare 900,000 < 60 s, settle 900,000 < 120 s, on 2 cores.
Usage: .venv/bin/python -m bench.bench_payroll [--enrolments 900000]
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import psycopg
from psycopg.sql import SQL, Identifier

from bench.common import (
    Row,
    Target,
    base_arguments,
    console,
    fresh_schema,
    machine,
    peak_rss_mib,
    print_table,
    print_targets,
)
from domain.case import Case
from domain.provenance import Provenance
from domain.receipt import MessageReceipt
from jiuzhu.bootstrap import casework
from jiuzhu.settings import Settings
from payroll.decide import load_cycle
from payroll.follow import catch_up
from payroll.prepare import prepare_month
from payroll.settle import settle_file
from projections.base import read_model_datastore
from projections.payroll_ledger import PayrollLedger

CHINA = timezone(timedelta(hours=8))
MONTH = "2023-06"
COUNTIES = [f"61{n:04d}" for n in range(101, 201)]


def _by(actor: str, role: str) -> Provenance:
    return Provenance.model_validate(
        {
            "actor": actor,
            "role": role,
            "reason": "bench",
            "occurred_at": datetime(2023, 6, 25, tzinfo=CHINA),
        }
    )


def seed(app: object, count: int, per_save: int = 1000, counties: int = len(COUNTIES)) -> None:
    """N cases enrolled in rural dibao from June (the rules' path is not what is timed)."""
    by = _by("bench", "approver")
    fields = by.event_fields()
    for start in range(0, count, per_save):
        cases = []
        for n in range(start, min(count, start + per_save)):
            case = Case.discover(
                case_id=uuid4(), household_id=f"HH-{n:07d}", region=COUNTIES[n % counties],
                channel="monitoring_alert", signals=[], household_size=1, personal={}, by=by,
            )  # fmt: skip
            case.trigger_event(
                Case.Enrolled, programme="rural_dibao", department="civil_affairs",
                basis="monthly", amount_fen=65000 + (n % 7) * 1000, category="stable",
                effective_from=date(2023, 6, 1), review_interval_months=12, **fields,
            )  # fmt: skip
            cases.append(case)
        app.save(*cases)  # type: ignore[attr-defined]


def settlement_file(ledger: PayrollLedger, path: Path) -> int:
    """Finance's file: every instruction of the month paid."""
    lines = 0
    with path.open("w", newline="") as out, ledger.datastore.transaction(commit=False) as curs:
        writer = csv.writer(out)
        writer.writerow(["instruction_id", "outcome", "amount_fen", "payment_ref", "reason"])
        curs.execute(
            SQL("SELECT instruction_id, amount_fen FROM {}.payroll_instructions").format(
                Identifier(ledger.datastore.schema)
            )
        )
        for row in curs:
            writer.writerow([row["instruction_id"], "paid", row["amount_fen"], f"B{lines}", ""])
            lines += 1
    return lines


def batched_append_baseline(app: object, count: int, per_save: int = 5000) -> float:
    """Seconds to append N one-event aggregates through the same audited store."""
    started = time.perf_counter()
    for start in range(0, count, per_save):
        receipts = [
            MessageReceipt.receive(f"bench/{uuid4()}") for _ in range(min(per_save, count - start))
        ]
        app.save(*receipts)  # type: ignore[attr-defined]
    return time.perf_counter() - started


def copy_baseline(database_url: str, schema: str, count: int) -> float:
    """Seconds to COPY N instruction-shaped rows into a table."""
    data = io.StringIO()
    for n in range(count):
        data.write(f"PI-2023-06-rural_dibao-610101-{n:06d}\tpaid\t65000\tB{n}\n")
    payload = data.getvalue().encode()
    with psycopg.connect(database_url) as conn:
        conn.execute(
            SQL("CREATE TABLE {}.copy_baseline (instruction_id text, outcome text, "
                "amount_fen bigint, payment_ref text)").format(Identifier(schema))
        )  # fmt: skip
        started = time.perf_counter()
        with (
            conn.cursor() as curs,
            curs.copy(SQL("COPY {}.copy_baseline FROM STDIN").format(Identifier(schema))) as copy,
        ):
            for offset in range(0, len(payload), 1 << 20):
                copy.write(payload[offset : offset + (1 << 20)])
        conn.commit()
        return time.perf_counter() - started


def main() -> None:
    parser = base_arguments(__doc__.splitlines()[0])
    parser.add_argument("--enrolments", type=int, default=900_000)
    parser.add_argument(
        "--counties", type=int, default=100, help="cycles per month (900,000 in 100: 9,000 each)"
    )
    args = parser.parse_args()
    n, counties = args.enrolments, min(args.counties, len(COUNTIES))
    console.print(
        f"payroll bench: {n:,} enrolments in {counties} counties; {machine(args.database_url)}"
    )
    console.print("[dim]the machine is shared with other engineers' work: figures are noisy[/]")
    with fresh_schema(args.database_url, "bench_payroll") as schema:
        settings = Settings(
            data_dir=Path(tempfile.mkdtemp(prefix="jiuzhu-bench-")),
            allow_generated_keys=True,  # a bench's throw-away keys
        )
        app = casework(args.database_url, schema=schema, settings=settings)
        datastore = read_model_datastore(args.database_url, schema=schema)
        ledger = PayrollLedger(datastore)
        ledger.create_table()
        started = time.perf_counter()
        seed(app, n, counties=counties)
        seeded = time.perf_counter() - started
        started = time.perf_counter()
        catch_up(app, ledger)
        followed = time.perf_counter() - started
        rss_seeded = peak_rss_mib()
        console.print(
            f"seeded {2 * n:,} events in {seeded:.1f} s; ledger followed in {followed:.1f} s"
        )

        started = time.perf_counter()
        prepared = prepare_month(app, ledger, month=MONTH, by=_by("clerk-li", "caseworker"))
        prepare_s = time.perf_counter() - started
        rss_prepared = peak_rss_mib()
        instructions = sum(p.instructions for p in prepared)
        approver = _by("director-wang", "approver")
        for cycle in prepared:
            found = load_cycle(app, cycle.cycle_id)
            found.approve(0, by=approver)
            app.save(found)
        catch_up(app, ledger)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "settled.csv"
            lines = settlement_file(ledger, path)
            started = time.perf_counter()
            report = settle_file(app, ledger, MONTH, path, by=_by("bank", "upstream_system"))
            settle_s = time.perf_counter() - started
        rss_settled = peak_rss_mib()
        assert report.paid == lines == instructions == n, (report.as_json(), lines, instructions)

        append_s = batched_append_baseline(app, n)
        copy_s = copy_baseline(args.database_url, schema, n)
        app.close()
        datastore.close()

    rows = [
        Row(
            "prepare (all cycles of the month)",
            n / prepare_s,
            "enrolments/s",
            n / copy_s,
            "COPY of N rows",
        ),
        Row(
            "settle N-line file (N Paid on cases)",
            n / settle_s,
            "lines/s",
            n / append_s,
            "batched append, 5,000 per save",
        ),
        Row("ledger follows the seeded log", 2 * n / followed, "events/s"),
    ]
    print_table(f"Payroll, {n:,} enrolments ({len(prepared)} cycles)", rows)
    console.print(
        f"prepare {prepare_s:.1f} s, settle {settle_s:.1f} s; baselines: batched append "
        f"{append_s:.1f} s, COPY {copy_s:.2f} s; peak RSS MiB after seeding {rss_seeded:.0f}, "
        f"prepare {rss_prepared:.0f}, settle {rss_settled:.0f}"
    )
    scale = 900_000 / n
    note = "" if scale == 1 else f" (extrapolated linearly ×{scale:.1f})"
    prepare_900k, settle_900k = prepare_s * scale, settle_s * scale
    print_targets([
        Target("prepare 900,000 < 60 s", prepare_900k < 60, f"{prepare_900k:.1f} s{note}"),
        Target("settle 900,000 < 120 s", settle_900k < 120, f"{settle_900k:.1f} s{note}"),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
